// Why a model cannot be served with tensor parallelism, as errors of src/errors.ts's table.
import { SpanserveError } from '../../errors.ts'

/** --tp-size does not divide the model (heads or KV heads), or is out of range. */
export class TpConfigError extends SpanserveError {
  constructor(message: string) {
    super('SPANSERVE_ERR_CONFIG', message)
    this.name = 'TpConfigError'
  }
}

/** The graph is not one spanserve built, so its weights cannot be found by name and split. */
export class TpModelFormatError extends SpanserveError {
  constructor(message: string) {
    super('SPANSERVE_ERR_MODEL_INVALID', message)
    this.name = 'TpModelFormatError'
  }
}
