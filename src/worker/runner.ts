/**
 * Prefill and decode steps over an ONNX decoder with KV cache (Optimum layout). Decode runs every
 * running sequence in ONE session run: pasts are left-padded to the longest, and the attention mask
 * hides the padding, so each row computes what it would alone.
 *
 * The batch's KV stays resident between decode steps: when a step decodes the same sequences in the
 * same order as the step before (steady decode), the previous step's `present.*` tensors are fed back
 * as this step's `past_key_values.*` as they are (every row grew by one, so left padding stays valid
 * and the mask gains one column). Nothing is copied into or out of the per-sequence caches then. When
 * the composition changes (a sequence joins or leaves, or a decoding sequence is prefilled again), the
 * new batch is gathered from the resident tensors (rows that stay) and the per-sequence caches (rows
 * that join), and the resident rows that drop out are written back into their own caches.
 */
import * as ort from 'onnxruntime-node'
import type { PrefillEntry } from '../ipc/messages.ts'
import type { ModelInfo } from '../model/load.ts'
import { copyBatchRow, SequenceKv, type KvShape } from './kv-cache.ts'
import { Sampler } from './sampler.ts'

interface Sequence {
  /** Holds the first `kv.length` tokens; the rest (up to `length`) only in the resident batch. */
  kv: SequenceKv
  sampler: Sampler
  /** The last sampled token: the input of the next decode step. */
  lastToken: number
  /** Tokens cached for this sequence, wherever they are held. */
  length: number
  /** Set by release: a resident row that is not to be written back. */
  released: boolean
}

/** The last decode step's batch KV: `present.*` of that step, [B, heads, slots, headDim] each. */
interface Resident {
  rows: Sequence[]
  kv: Float32Array[]
  slots: number
}

export class RunnerError extends Error {}

export interface StepResult {
  /** One token per row (-1: none sampled). */
  tokens: Int32Array
  /** Last-position logits, row after row. */
  logits: Float32Array
  vocab: number
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

export class ModelRunner {
  private readonly seqs = new Map<string, Sequence>()
  private readonly shape: KvShape
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

  release(rid: string): void {
    const seq = this.seqs.get(rid)
    if (!seq) return
    seq.released = true
    this.seqs.delete(rid)
  }

  clear(): void {
    for (const s of this.seqs.values()) s.released = true
    this.seqs.clear()
    this.resident = null
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

  /** Write the tokens a resident row holds beyond its own cache back into that cache. */
  private writeBack(res: Resident, r: number): void {
    const seq = res.rows[r]!
    const count = seq.length - seq.kv.length
    if (count <= 0 || seq.released) return
    for (let idx = 0; idx < res.kv.length; idx++) seq.kv.appendFrom(res.kv[idx]!, idx, r, res.slots, res.slots - count, count)
    seq.kv.advance(count)
  }

  /** Give up the resident batch, every live row's tokens written back into its own cache. */
  private dropResident(): void {
    const res = this.resident
    if (!res) return
    this.resident = null
    for (let r = 0; r < res.rows.length; r++) this.writeBack(res, r)
  }

  /**
   * Run one prompt chunk of one sequence. `token` is the first generated token when the chunk is the
   * prompt's last, else -1; `logits` are the chunk's last position's.
   */
  async prefill(entry: PrefillEntry): Promise<StepResult> {
    let seq = this.seqs.get(entry.rid)
    if (!seq) {
      if (entry.start !== 0 || entry.sampling === null) throw new RunnerError(`prefill of unknown sequence ${entry.rid} at ${entry.start}`)
      seq = { kv: new SequenceKv(this.shape), sampler: new Sampler(entry.sampling), lastToken: -1, length: 0, released: false }
      this.seqs.set(entry.rid, seq)
    }
    const past = seq.length
    if (past !== entry.start) throw new RunnerError(`sequence ${entry.rid} holds ${past} tokens, chunk starts at ${entry.start}`)
    // A sequence with tokens only in the resident batch is materialised first (the batch changes).
    if (seq.kv.length !== past) this.dropResident()
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
    if (entry.last) seq.lastToken = seq.sampler.sample(logits, 0, vocab)
    return { tokens: Int32Array.of(entry.last ? seq.lastToken : -1), logits, vocab }
  }

  /** The batch's past KV for `rows`: the resident tensors when the batch is unchanged, else gathered. */
  private pastFor(rows: readonly Sequence[]): { kv: Float32Array[]; slots: number } {
    const res = this.resident
    if (res && res.rows.length === rows.length && res.rows.every((s, r) => s === rows[r])) return res
    let slots = 0
    for (const r of rows) slots = Math.max(slots, r.length)
    const { numKvHeads: H, headDim: D } = this.shape
    const B = rows.length
    const from = new Map<Sequence, number>()
    if (res) res.rows.forEach((s, r) => from.set(s, r))
    const kv: Float32Array[] = []
    for (let idx = 0; idx < this.pastNames.length; idx++) {
      const data = new Float32Array(B * H * slots * D)
      for (let r = 0; r < B; r++) {
        const seq = rows[r]!
        const j = from.get(seq)
        if (j !== undefined) copyBatchRow(this.shape, res!.kv[idx]!, j, res!.slots, data, r, slots, seq.length)
        else seq.kv.writeInto(data, idx, r, slots)
      }
      kv.push(data)
    }
    if (res) {
      // Rows that leave the batch but live on (not released) keep their tokens in their own caches.
      const staying = new Set(rows)
      for (let r = 0; r < res.rows.length; r++) if (!staying.has(res.rows[r]!)) this.writeBack(res, r)
      this.resident = null
    }
    return { kv, slots }
  }

  /**
   * One decode step for all the given sequences in one session run: their next tokens and logits
   * [B, vocab]. `inputs` are the sequences' last tokens when the caller knows them (TP ranks other
   * than 0 do not sample); by default each sequence's own last sampled token.
   */
  async decode(rids: readonly string[], inputs?: Int32Array): Promise<StepResult> {
    const rows = rids.map((rid) => {
      const s = this.seqs.get(rid)
      if (!s || s.lastToken < 0) throw new RunnerError(`decode of sequence ${rid} that has not finished prefill`)
      return s
    })
    const B = rows.length
    const past = this.pastFor(rows)
    const slots = past.slots
    const fresh = this.inFlight > 0
    const { big: ids, words: idWords } = this.idsScratch.take(B, fresh)
    const { big: pos, words: posWords } = this.posScratch.take(B, fresh)
    const mask = this.maskScratch.take(B * (slots + 1), fresh).big.fill(1n)
    for (let r = 0; r < B; r++) {
      const len = rows[r]!.length
      setInt64(idWords, r, inputs ? inputs[r]! : rows[r]!.lastToken)
      setInt64(posWords, r, len)
      if (slots > len) mask.fill(0n, r * (slots + 1), r * (slots + 1) + (slots - len))
    }
    const { numKvHeads: H, headDim: D } = this.shape
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      attention_mask: new ort.Tensor('int64', mask, [B, slots + 1]),
    }
    if (this.usesPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [B, 1])
    for (let idx = 0; idx < this.pastNames.length; idx++) feeds[this.pastNames[idx]!] = new ort.Tensor('float32', past.kv[idx]!, [B, H, slots, D])
    let out: ort.InferenceSession.ReturnType
    try {
      out = await this.run(feeds)
    } catch (err) {
      // Keep the gathered batch: the rows' caches are as they were before the step.
      this.resident = { rows, kv: past.kv, slots }
      throw err
    }
    // The present tensors become the resident batch; the per-sequence caches are not touched.
    this.resident = { rows, kv: this.presentNames.map((name) => out[name]!.data as Float32Array), slots: slots + 1 }
    for (const row of rows) row.length += 1
    const logits = out.logits!
    const vocab = logits.dims[2]!
    const data = logits.data as Float32Array
    const next = new Int32Array(B)
    for (let r = 0; r < B; r++) {
      next[r] = rows[r]!.sampler.sample(data, r * vocab, vocab)
      rows[r]!.lastToken = next[r]!
    }
    return { tokens: next, logits: data, vocab }
  }
}
