/**
 * Prefill and decode steps over an ONNX decoder with KV cache (Optimum layout). Decode runs every
 * running sequence in ONE session run: pasts are left-padded to the longest, and the attention mask
 * hides the padding, so each row computes what it would alone.
 *
 * The batch's KV stays resident between decode steps: each step's `present.*` tensors are fed back
 * as the next step's `past_key_values.*` as they are (every row grew by one, so left padding stays
 * valid and the mask gains one column). A sequence keeps its row while it decodes, whatever order the
 * caller names it in. One that leaves frees its row (written back into its own cache unless released);
 * one that joins is written into a free row, right-aligned: a join or a leave costs one row, not the
 * batch. The batch is gathered anew (compacted) only when joiners do not fit (no free row, or a
 * sequence longer than the slots), when more than a quarter of the rows are free, or when the left
 * padding grows past an eighth of the longest row: copies of the whole KV are then rare, while
 * continuous batching changes the batch every few steps. A free row still runs, attending to itself
 * only; its output is ignored.
 */
import * as ort from 'onnxruntime-node'
import type { PrefillEntry, TokenLogprobs } from '../ipc/messages.ts'
import { SpanserveError } from '../errors.ts'
import type { ModelInfo } from '../model/load.ts'
import { KV_BLOCK_TOKENS } from '../ipc/kv-blocks.ts'
import { copyBatchRow, KvBlockStore, SequenceKv, type KvShape } from './kv-cache.ts'
import { Sampler } from './sampler.ts'
import { logprobsRecorder, type LogprobsRecorder } from './logprobs.ts'
import type { StepRunner } from './step-runner.ts'

interface Sequence {
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

/** The decode batch's KV: `present.*` of the last step, [B, heads, slots, headDim] each. */
interface Resident {
  /** null: a free row. */
  rows: (Sequence | null)[]
  kv: Float32Array[]
  slots: number
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
class Int64Scratch {
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
function setInt64(words: Int32Array, i: number, v: number): void {
  words[2 * i] = v
  words[2 * i + 1] = 0
}

/**
 * Where a new sequence's KV lives: the scheduler's block table (which may start on a cached prefix),
 * or blocks of its own, with ids below 0 so they never meet the scheduler's. Shared by both runners.
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

export class ModelRunner implements StepRunner {
  private readonly seqs = new Map<string, Sequence>()
  private readonly shape: KvShape
  private readonly blocks: SequenceBlocks
  private readonly pastNames: string[]
  private readonly presentNames: string[]
  readonly usesPositionIds: boolean
  private resident: Resident | null = null
  private readonly idsScratch = new Int64Scratch()
  private readonly posScratch = new Int64Scratch()
  private readonly maskScratch = new Int64Scratch()
  /** Session runs started and not yet finished: the scratch buffers are in use while one is. */
  private inFlight = 0

  constructor(
    readonly session: ort.InferenceSession,
    readonly info: ModelInfo,
  ) {
    this.shape = { numLayers: info.numLayers, numKvHeads: info.numKvHeads, headDim: info.headDim }
    this.blocks = new SequenceBlocks(new KvBlockStore(this.shape))
    this.pastNames = []
    this.presentNames = []
    for (let i = 0; i < info.numLayers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`)
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`)
    }
    this.usesPositionIds = session.inputNames.includes('position_ids')
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

  release(rid: string): void {
    const seq = this.seqs.get(rid)
    if (!seq) return
    seq.released = true
    this.seqs.delete(rid)
    if (seq.row >= 0 && this.resident) this.resident.rows[seq.row] = null
    seq.row = -1
    this.blocks.close(seq.kv, seq.ownBlocks)
  }

  /** The scheduler freed these KV blocks (after releasing the sequences that held them). */
  freeBlocks(ids: Iterable<number>): void {
    this.blocks.store.free(ids)
  }

  trim(): void {
    if (this.resident && this.resident.rows.every((r) => r === null)) this.resident = null
    this.blocks.store.trim()
  }

  /** KV blocks held: the live sequences' and the prefix cache's. */
  heldBlocks(): number {
    return this.blocks.store.size
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

  private async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    this.inFlight++
    try {
      return await this.session.run(feeds)
    } finally {
      this.inFlight--
    }
  }

  /** Take a sequence out of the resident batch, the tokens it holds beyond its own cache written back into that cache; its row becomes free. */
  private evict(seq: Sequence): void {
    const res = this.resident
    if (!res || seq.row < 0) return
    const r = seq.row
    const count = seq.length - seq.kv.length
    if (count > 0 && !seq.released) {
      for (let idx = 0; idx < res.kv.length; idx++) seq.kv.appendFrom(res.kv[idx]!, idx, r, res.slots, res.slots - count, count)
      seq.kv.advance(count)
    }
    res.rows[r] = null
    seq.row = -1
  }

  /**
   * Run one prompt chunk of one sequence. `token` is the first generated token when the chunk is the
   * prompt's last, else -1; `logits` are the chunk's last position's.
   */
  async prefill(entry: PrefillEntry): Promise<StepResult> {
    let seq = this.seqs.get(entry.rid)
    if (!seq) {
      const kv = this.blocks.open(entry)
      seq = { kv, ownBlocks: !entry.blocks, sampler: new Sampler(entry.sampling!), logprobs: logprobsRecorder(entry.sampling!), lastToken: -1, length: kv.length, released: false, row: -1 }
      this.seqs.set(entry.rid, seq)
    }
    const past = seq.length
    if (past !== entry.start) throw new RunnerError(`sequence ${entry.rid} holds ${past} tokens, chunk starts at ${entry.start}`)
    // A sequence with tokens only in the resident batch is materialised first.
    this.evict(seq)
    const n = entry.tokens.length
    const fresh = this.inFlight > 0
    const { big: ids, words: idWords } = this.idsScratch.take(n, fresh)
    const { big: pos, words: posWords } = this.posScratch.take(n, fresh)
    for (let i = 0; i < n; i++) {
      setInt64(idWords, i, entry.tokens[i]!)
      setInt64(posWords, i, past + i)
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [1, n]),
      attention_mask: new ort.Tensor('int64', this.maskScratch.take(past + n, fresh).big.fill(1n), [1, past + n]),
    }
    if (this.usesPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [1, n])
    const { numKvHeads: H, headDim: D } = this.shape
    for (let idx = 0; idx < this.pastNames.length; idx++) {
      const data = new Float32Array(H * past * D)
      if (past > 0) seq.kv.writeInto(data, idx, 0, past)
      feeds[this.pastNames[idx]!] = new ort.Tensor('float32', data, [1, H, past, D])
    }
    const out = await this.run(feeds)
    for (let idx = 0; idx < this.presentNames.length; idx++) seq.kv.appendFrom(out[this.presentNames[idx]!]!.data as Float32Array, idx, 0, past + n, past, n)
    seq.kv.advance(n)
    seq.length += n
    const vocab = out.logits!.dims[2]!
    const logits = (out.logits!.data as Float32Array).subarray((n - 1) * vocab, n * vocab)
    seq.logprobs?.promptChunk(out.logits!.data as Float32Array, vocab, entry.tokens, entry.start, entry.last)
    if (entry.last) {
      seq.lastToken = seq.sampler.sample(logits, 0, vocab)
      seq.logprobs?.token(logits, 0, vocab, seq.lastToken)
    }
    return { tokens: Int32Array.of(entry.last ? seq.lastToken : -1), logits, vocab, rows: Int32Array.of(0) }
  }

  /**
   * Make the resident batch hold exactly `seqs` (and perhaps free rows): leavers free their rows,
   * joiners take free rows, or the batch is gathered anew when that is due (see the file comment).
   */
  private place(seqs: readonly Sequence[]): Resident {
    let res = this.resident
    if (res) {
      const wanted = new Set(seqs)
      for (const s of res.rows) if (s !== null && !wanted.has(s)) this.evict(s)
      let free = 0
      for (const s of res.rows) if (s === null) free++
      let joiners = 0
      let longest = 0
      for (const s of seqs) {
        if (s.row < 0) joiners++
        longest = Math.max(longest, s.length)
      }
      const fits = joiners <= free && longest <= res.slots
      const sparse = (free - joiners) * 4 > res.rows.length
      const padded = res.slots > longest + Math.max(16, longest >> 3)
      // A run still reading the tensors (a caller not awaiting its steps) must not see them change.
      if (fits && !sparse && !padded && this.inFlight === 0) {
        let r = 0
        for (const s of seqs) {
          if (s.row >= 0) continue
          while (res.rows[r] !== null) r++
          res.rows[r] = s
          s.row = r
          for (let idx = 0; idx < res.kv.length; idx++) s.kv.writeInto(res.kv[idx]!, idx, r, res.slots)
        }
        return res
      }
    }
    // Gather anew, in the caller's order: resident rows from the resident tensors, the others from their own caches.
    let slots = 0
    for (const s of seqs) slots = Math.max(slots, s.length)
    const { numKvHeads: H, headDim: D } = this.shape
    const B = seqs.length
    const kv: Float32Array[] = []
    for (let idx = 0; idx < this.pastNames.length; idx++) {
      const data = new Float32Array(B * H * slots * D)
      for (let r = 0; r < B; r++) {
        const seq = seqs[r]!
        if (seq.row >= 0) copyBatchRow(this.shape, res!.kv[idx]!, seq.row, res!.slots, data, r, slots, seq.length)
        else seq.kv.writeInto(data, idx, r, slots)
      }
      kv.push(data)
    }
    seqs.forEach((s, r) => (s.row = r))
    res = { rows: [...seqs], kv, slots }
    this.resident = res
    return res
  }

  /**
   * One decode step for all the given sequences in one session run: their next tokens and logits.
   * `inputs` are the sequences' last tokens when the caller knows them (TP ranks other than 0 do not
   * sample); by default each sequence's own last sampled token.
   */
  async decode(rids: readonly string[], inputs?: Int32Array): Promise<StepResult> {
    const seqs = rids.map((rid) => {
      const s = this.seqs.get(rid)
      if (!s || s.lastToken < 0) throw new RunnerError(`decode of sequence ${rid} that has not finished prefill`)
      return s
    })
    const res = this.place(seqs)
    const B = res.rows.length
    const slots = res.slots
    const fresh = this.inFlight > 0
    const { big: ids, words: idWords } = this.idsScratch.take(B, fresh)
    const { big: pos, words: posWords } = this.posScratch.take(B, fresh)
    const mask = this.maskScratch.take(B * (slots + 1), fresh).big.fill(1n)
    for (let r = 0; r < B; r++) {
      const seq = res.rows[r]!
      // A free row attends to its own position only.
      const len = seq === null ? 0 : seq.length
      setInt64(idWords, r, seq === null ? 0 : seq.lastToken)
      setInt64(posWords, r, len)
      if (slots > len) mask.fill(0n, r * (slots + 1), r * (slots + 1) + (slots - len))
    }
    if (inputs) for (let i = 0; i < seqs.length; i++) setInt64(idWords, seqs[i]!.row, inputs[i]!)
    const { numKvHeads: H, headDim: D } = this.shape
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      attention_mask: new ort.Tensor('int64', mask, [B, slots + 1]),
    }
    if (this.usesPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [B, 1])
    for (let idx = 0; idx < this.pastNames.length; idx++) feeds[this.pastNames[idx]!] = new ort.Tensor('float32', res.kv[idx]!, [B, H, slots, D])
    // On failure the resident batch stays as placed: the rows' tokens are where they were before the step.
    const out = await this.run(feeds)
    // The present tensors become the resident batch; the per-sequence caches are not touched.
    res.kv = this.presentNames.map((name) => out[name]!.data as Float32Array)
    res.slots = slots + 1
    for (const seq of seqs) seq.length += 1
    const logits = out.logits!
    const vocab = logits.dims[2]!
    const data = logits.data as Float32Array
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
