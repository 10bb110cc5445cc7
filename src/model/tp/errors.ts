// Why a model cannot be served with tensor parallelism. Codes are those of src/errors.ts's table.

/** --tp-size does not divide the model (heads or KV heads), or is out of range. */
export class TpConfigError extends Error {
  readonly code = 'SPANSERVE_ERR_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'TpConfigError';
  }
}

/** The graph is not one spanserve built, so its weights cannot be found by name and split. */
export class TpModelFormatError extends Error {
  readonly code = 'SPANSERVE_ERR_MODEL_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'TpModelFormatError';
  }
}
