import { SpanserveError } from '../errors.ts'

/** A model directory (or a built model) that cannot be served; the message names the file or field. */
export class ModelLoadError extends SpanserveError {
  constructor(message: string) {
    super('SPANSERVE_ERR_MODEL_INVALID', message)
    this.name = 'ModelLoadError'
  }
}
