/**
 * A per-sequence step of the worker's sampler between the model's logits and the draw: it changes
 * the logits of one row before each draw, and sees each token the sequence accepts. Penalties live
 * here, and grammars will (their state advances with each accepted token).
 */
export interface LogitsProcessor {
  /** Change logits[offset .. offset + vocab) in place (a copy of the model's row). */
  apply(logits: Float32Array, offset: number, vocab: number): void
  /** The token the sequence took. */
  accept(token: number): void
}
