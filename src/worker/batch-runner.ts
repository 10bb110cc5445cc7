/**
 * What the single-session runners share (runner.ts's ModelRunner on an Optimum-layout graph,
 * fused-runner.ts's FusedRunner on spanserve's fused graph): the sequences and their KV blocks, the
 * resident decode batch's rows, prefill bookkeeping, and sampling into a StepResult. How the resident
 * batch's KV is laid out and fed is each runner's own.
 */
import type * as ort from 'onnxruntime-node'
import type { PrefillEntry, TokenLogprobs } from '../ipc/messages.ts'
import { SpanserveError } from '../errors.ts'
import type { ModelInfo } from '../model/load.ts'
import { KV_BLOCK_TOKENS } from '../ipc/kv-blocks.ts'
import { KvBlockStore, SequenceKv, type KvShape } from './kv-cache.ts'
import { Sampler } from './sampler.ts'
import { logprobsRecorder, type LogprobsRecorder } from './logprobs.ts'
import type { StepRunner } from './step-runner.ts'

export interface Sequence {
  /** Holds the first `kv.length` tokens; the rest (up to `length`) only in the resident batch. */
  kv: SequenceKv
  /** Its blocks are its own (no table from the scheduler): freed with it. */
  ownBlocks: boolean
  sampler: Sampler
  /** Only when the request asks for logprobs. */
  logprobs: LogprobsRecorder | null
  /** The last sampled token: the input of the next decode step. */
  lastToken: number
  /** Tokens cached for this sequence, wherever they are held. */
  length: number
  /** Set by release: a resident row that is not to be written back. */
  released: boolean
  /** Its row in the resident batch, or -1. */
  row: number
}

/** The decode batch kept between steps; each runner adds its KV layout. */
export interface ResidentRows {
  /** null: a free row. */
  rows: (Sequence | null)[]
}

/** A step the runner cannot run (a broken scheduler-worker invariant): the worker fails as a whole. */
export class RunnerError extends SpanserveError {
  constructor(message: string) {
    super('SPANSERVE_ERR_INTERNAL', message)
    this.name = 'RunnerError'
  }
}

export interface StepResult {
  /** One token per sequence, in the caller's order (-1: none sampled). */
  tokens: Int32Array
  /** Last-position logits [rows, vocab], in the session's row order (see `rows`). */
  logits: Float32Array
  vocab: number
  /** The row of `logits` that holds each sequence's, in the caller's order. */
  rows: Int32Array
}

/** The logits of the caller's `i`-th sequence. */
export function rowLogits(result: StepResult, i: number): Float32Array {
  const r = result.rows[i]!
  return result.logits.subarray(r * result.vocab, (r + 1) * result.vocab)
}

/**
 * A BigInt64Array reused from step to step, and an Int32Array view of it for writing small
 * non-negative values. session.run reads its feeds on a later turn of the event loop, so while a run
 * is in flight (a caller that does not await one step before starting the next) fresh arrays are
 * handed out instead.
 */
export class Int64Scratch {
  private big = new BigInt64Array(0)
  private words = new Int32Array(0)

  /** A zero-offset view of `n` elements (grown when needed; contents unspecified). */
  take(n: number, fresh = false): { big: BigInt64Array; words: Int32Array } {
    if (fresh) {
      const big = new BigInt64Array(n)
      return { big, words: new Int32Array(big.buffer) }
    }
    if (this.big.length < n) {
      this.big = new BigInt64Array(Math.max(n, this.big.length * 2))
      this.words = new Int32Array(this.big.buffer)
    }
    return { big: this.big.subarray(0, n), words: this.words.subarray(0, 2 * n) }
  }
}

/** v as an int64 in little-endian words (0 ≤ v < 2^31): no BigInt per element. */
export function setInt64(words: Int32Array, i: number, v: number): void {
  words[2 * i] = v
  words[2 * i + 1] = 0
}

/**
 * Where a new sequence's KV lives: the scheduler's block table (which may start on a cached prefix),
 * or blocks of its own, with ids below 0 so they never meet the scheduler's. Shared by every runner.
 */
export class SequenceBlocks {
  private nextOwn = -1

  constructor(readonly store: KvBlockStore) {}

  /** Whether a first chunk can start a sequence here: its prefix blocks are all held. */
  canStart(entry: PrefillEntry): boolean {
    if (entry.sampling === null) return false
    if (!entry.blocks) return entry.start === 0
    return entry.start % KV_BLOCK_TOKENS === 0 && SequenceKv.holds(this.store, entry.blocks, entry.start)
  }

  /** The KV of a sequence that `entry` (its first chunk) starts. */
  open(entry: PrefillEntry): SequenceKv {
    if (!this.canStart(entry)) throw new RunnerError(`prefill of unknown sequence ${entry.rid} at ${entry.start}${entry.blocks ? ' (its cached prefix is not held)' : ''}`)
    if (entry.blocks) return new SequenceKv(this.store, Array.from(entry.blocks), entry.start)
    return new SequenceKv(this.store, [], 0, () => this.nextOwn--)
  }

  /** A sequence leaves: blocks of its own go with it (the scheduler frees its table's blocks itself). */
  close(kv: SequenceKv, own: boolean): void {
    if (own) this.store.free(kv.table)
  }
}

/** Seats each joiner (no row yet) in the first free row of the resident batch, in order, and writes its KV there. */
export function seatJoiners(rows: (Sequence | null)[], seqs: readonly Sequence[], write: (s: Sequence, row: number) => void): void {
  let r = 0
  for (const s of seqs) {
    if (s.row >= 0) continue
    while (rows[r] !== null) r++
    rows[r] = s
    s.row = r
    write(s, r)
  }
}

/** What every runner keeps of a sequence it holds. */
interface HeldSequence {
  kv: SequenceKv
  ownBlocks: boolean
  logprobs: LogprobsRecorder | null
}

/**
 * The sequences a runner holds and their KV blocks: what the whole-model runners (BatchRunner) and
 * a tensor-parallel rank's (tp/runner.ts) answer alike.
 */
export abstract class HeldSequences<S extends HeldSequence> {
  protected readonly seqs = new Map<string, S>()
  protected readonly blocks: SequenceBlocks

  constructor(readonly shape: KvShape) {
    this.blocks = new SequenceBlocks(new KvBlockStore(shape))
  }

  get size(): number {
    return this.seqs.size
  }

  rids(): IterableIterator<string> {
    return this.seqs.keys()
  }

  has(rid: string): boolean {
    return this.seqs.has(rid)
  }

  /** The logprobs of the oldest token sampled for `rid` and not yet taken (null: it asked for none). */
  takeLogprobs(rid: string): TokenLogprobs | null {
    return this.seqs.get(rid)?.logprobs?.take() ?? null
  }

  /** Whether `entry` can run: a chunk of a sequence held here, or a first chunk whose cached prefix is held. */
  canPrefill(entry: PrefillEntry): boolean {
    return this.seqs.has(entry.rid) || this.blocks.canStart(entry)
  }

  /** The scheduler freed these KV blocks (after releasing the sequences that held them). */
  freeBlocks(ids: Iterable<number>): void {
    this.blocks.store.free(ids)
  }

  /** KV blocks held: the live sequences' and the prefix cache's. */
  heldBlocks(): number {
    return this.blocks.store.size
  }

  /** The data of the first `count` blocks of a sequence held here (null: not held, or fewer blocks). */
  exportBlocks(rid: string, count: number): Float32Array | null {
    const seq = this.seqs.get(rid)
    if (seq === undefined || seq.kv.length < count * KV_BLOCK_TOKENS) return null
    return this.blocks.store.copyOut(seq.kv.table.slice(0, count))
  }

  /** Writes blocks another instance sent (exportBlocks' layout) into the scheduler's `ids`, from index `from` on. */
  importBlocks(ids: Int32Array, data: Float32Array, from: number): void {
    this.blocks.store.copyIn(ids, data, from)
  }

  /** Floats of one KV block here: what a transfer's data must be a multiple of. */
  get blockFloats(): number {
    return this.blocks.store.blockFloats
  }
}

export abstract class BatchRunner<R extends ResidentRows> extends HeldSequences<Sequence> implements StepRunner {
  protected resident: R | null = null
  protected readonly idsScratch = new Int64Scratch()
  protected readonly posScratch = new Int64Scratch()
  /** Session runs started and not yet finished: the scratch buffers are in use while one is. */
  protected inFlight = 0

  constructor(
    readonly session: ort.InferenceSession,
    readonly info: ModelInfo,
  ) {
    super({ numLayers: info.numLayers, numKvHeads: info.numKvHeads, headDim: info.headDim })
  }

  abstract prefill(entry: PrefillEntry): Promise<StepResult>
  abstract decode(rids: readonly string[], inputs?: Int32Array): Promise<StepResult>

  /** Take a sequence out of the resident batch, its tokens beyond its own cache written back into it; its row becomes free. */
  protected abstract evict(seq: Sequence): void

  release(rid: string): void {
    const seq = this.seqs.get(rid)
    if (!seq) return
    seq.released = true
    this.seqs.delete(rid)
    if (seq.row >= 0 && this.resident) this.resident.rows[seq.row] = null
    seq.row = -1
    this.blocks.close(seq.kv, seq.ownBlocks)
  }

  trim(): void {
    if (this.resident?.rows.every((r) => r === null)) this.resident = null
    this.blocks.store.trim()
  }

  clear(): void {
    for (const s of this.seqs.values()) {
      s.released = true
      s.row = -1
    }
    this.seqs.clear()
    this.resident = null
    this.blocks.store.clear()
  }

  /** Tokens held in KV cache, over all sequences. */
  cachedTokens(): number {
    let n = 0
    for (const s of this.seqs.values()) n += s.length
    return n
  }

  protected async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    this.inFlight++
    try {
      return await this.session.run(feeds)
    } finally {
      this.inFlight--
    }
  }

  /**
   * The sequence a prompt chunk continues (or starts), checked to be at the chunk's start, with every
   * token it holds materialised in its own cache (out of the resident batch).
   */
  protected beginPrefill(entry: PrefillEntry): Sequence {
    let seq = this.seqs.get(entry.rid)
    if (!seq) {
      const kv = this.blocks.open(entry)
      seq = { kv, ownBlocks: !entry.blocks, sampler: new Sampler(entry.sampling!), logprobs: logprobsRecorder(entry.sampling!), lastToken: -1, length: kv.length, released: false, row: -1 }
      this.seqs.set(entry.rid, seq)
    }
    if (seq.length !== entry.start) throw new RunnerError(`sequence ${entry.rid} holds ${seq.length} tokens, chunk starts at ${entry.start}`)
    this.evict(seq)
    return seq
  }

  /**
   * After the chunk's K/V went into the sequence's cache: count its tokens, record prompt logprobs,
   * and sample the first token when the chunk is the prompt's last. `logits` [n, vocab] are the chunk's.
   */
  protected endPrefill(seq: Sequence, entry: PrefillEntry, all: Float32Array, vocab: number): StepResult {
    const n = entry.tokens.length
    seq.kv.advance(n)
    seq.length += n
    const logits = all.subarray((n - 1) * vocab, n * vocab)
    seq.logprobs?.promptChunk(all, vocab, entry.tokens, entry.start, entry.last)
    if (entry.last) {
      seq.lastToken = seq.sampler.sample(logits, 0, vocab)
      seq.logprobs?.token(logits, 0, vocab, seq.lastToken)
    }
    return { tokens: Int32Array.of(entry.last ? seq.lastToken : -1), logits, vocab, rows: Int32Array.of(0) }
  }

  /** The sequences named by a decode step, each having finished prefill. */
  protected decoding(rids: readonly string[]): Sequence[] {
    return rids.map((rid) => {
      const s = this.seqs.get(rid)
      if (!s || s.lastToken < 0) throw new RunnerError(`decode of sequence ${rid} that has not finished prefill`)
      return s
    })
  }

  /** Sample each sequence's next token from its row of a decode step's logits [B, 1, vocab]. */
  protected sampleRows(seqs: readonly Sequence[], data: Float32Array, vocab: number): StepResult {
    const next = new Int32Array(seqs.length)
    const rows = new Int32Array(seqs.length)
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!
      rows[i] = seq.row
      next[i] = seq.sampler.sample(data, seq.row * vocab, vocab)
      seq.logprobs?.token(data, seq.row * vocab, vocab, next[i]!)
      seq.lastToken = next[i]!
    }
    return { tokens: next, logits: data, vocab, rows }
  }
}
