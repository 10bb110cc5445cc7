/**
 * What the worker's grammar pool (pool.ts) and its threads (grammar-thread.ts) say to each other.
 * Compiles go by message and come back by message; a matcher's token mask comes back through its
 * slot, a SharedArrayBuffer the sampler waits on synchronously (Atomics), because the sampler needs
 * the mask inside the step.
 */
import type { OutputConstraint } from './constraint.ts'

export interface ThreadStart {
  tokenizerPath: string
  vocabSize: number
  stopTokenIds: number[]
  /** Compiled grammars the thread's cache keeps (its memory is bounded by the pool, which ends it). */
  cacheSize: number
}

export type ToThread =
  /** Compile (or find in the cache) for `rid`, which holds it until released. hitOnly: answer `miss` rather than compile. */
  | { type: 'compile'; job: number; rid: string; constraint: OutputConstraint; hitOnly: boolean }
  /** A matcher at the start of `rid`'s grammar; its first mask goes to the slot. */
  | { type: 'open'; id: number; rid: string; slot: SharedArrayBuffer }
  /** The matcher took these tokens; the next mask goes to the slot. */
  | { type: 'accept'; id: number; tokens: number[] }
  | { type: 'close'; id: number }
  | { type: 'release'; rid: string }

export type FromThread =
  | { type: 'ready'; memoryBytes: number }
  | { type: 'compiled'; job: number; ok: true; cacheHit: boolean; ms: number; memoryBytes: number }
  | { type: 'compiled'; job: number; ok: false; miss: boolean; reason: string; memoryBytes: number }

/**
 * A matcher's slot, as Int32Array words: the count of masks written (the sampler waits for the one it
 * asked for), the state of the last one, then the mask (bit id & 31 of word id >> 5: allowed).
 */
export const SLOT_DONE = 0
export const SLOT_STATE = 1
export const SLOT_MASK = 2
export const STATE_OPEN = 0
/** Complete: only the stop tokens remain (no mask written). */
export const STATE_TERMINATED = 1
/** The engine failed on this matcher (the reason went to the thread's log). */
export const STATE_FAILED = 2

export function slotWords(vocabSize: number): number {
  return SLOT_MASK + Math.ceil(vocabSize / 32)
}
