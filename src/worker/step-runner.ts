/**
 * What the worker's step loop needs of a runner, whichever it is: the whole model in one session
 * (runner.ts) or one tensor-parallel rank's shard (tp/runner.ts). Both declare `implements StepRunner`.
 */
import type { PrefillEntry, TokenLogprobs } from '../ipc/messages.ts'
import type { KvShape } from './kv-cache.ts'

/** What a step returns that the loop reads. */
export interface StepTokens {
  /** One token per sequence, in the caller's order (-1: none sampled). */
  tokens: Int32Array
  /** Time this rank spent in all-reduce (tensor-parallel runners only). */
  allReduceMs?: number
}

export interface StepRunner {
  readonly size: number
  prefill(entry: PrefillEntry): Promise<StepTokens>
  decode(rids: readonly string[], inputs?: Int32Array): Promise<StepTokens>
  release(rid: string): void
  clear(): void
  has(rid: string): boolean
  /** Whether a prefill entry can run here (its sequence, or for a first chunk its cached prefix, is held). */
  canPrefill(entry: PrefillEntry): boolean
  /** Drop the data of KV blocks the scheduler freed. */
  freeBlocks(ids: Iterable<number>): void
  /** Give back memory only load needed (KV slabs with no block held, a batch no sequence is in); called when idle. */
  trim(): void
  /** KV blocks held (sequences and prefix cache). */
  heldBlocks(): number
  rids(): IterableIterator<string>
  cachedTokens(): number
  /** The logprobs of the oldest token sampled for `rid` and not yet taken (null: it asked for none). */
  takeLogprobs(rid: string): TokenLogprobs | null
  /** Prefill/decode disaggregation: a sequence's first blocks copied out, and blocks written from another instance. */
  exportBlocks(rid: string, count: number): Float32Array | null
  importBlocks(ids: Int32Array, data: Float32Array, from: number): void
  readonly blockFloats: number
  /** The KV layout a transfer must match. */
  readonly shape: KvShape
}
