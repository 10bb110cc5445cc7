/** A model directory (or a built model) that cannot be served; the message names the file or field. */
export class ModelLoadError extends Error {
  readonly code = 'SPANSERVE_ERR_MODEL_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ModelLoadError';
  }
}
