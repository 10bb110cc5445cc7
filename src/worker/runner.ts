/**
 * Prefill and decode steps over an ONNX decoder with KV cache (Optimum layout). Decode runs every
 * running sequence in ONE session run: pasts are left-padded to the longest, and the attention mask
 * hides the padding, so each row computes what it would alone.
 */
import * as ort from 'onnxruntime-node'
import type { PrefillEntry } from '../ipc/messages.ts'
import type { ModelInfo } from '../model/load.ts'
import { SequenceKv, type KvShape } from './kv-cache.ts'
import { Sampler } from './sampler.ts'

interface Sequence {
  kv: SequenceKv
  sampler: Sampler
  /** The last sampled token: the input of the next decode step. */
  lastToken: number
}

export class RunnerError extends Error {}

export interface StepResult {
  /** One token per row (-1: none sampled). */
  tokens: Int32Array
  /** Last-position logits, row after row. */
  logits: Float32Array
  vocab: number
}

export class ModelRunner {
  private readonly seqs = new Map<string, Sequence>()
  private readonly shape: KvShape
  private readonly pastNames: string[]
  private readonly presentNames: string[]
  readonly usesPositionIds: boolean

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
    this.seqs.delete(rid)
  }

  clear(): void {
    this.seqs.clear()
  }

  /** Tokens held in KV cache, over all sequences. */
  cachedTokens(): number {
    let n = 0
    for (const s of this.seqs.values()) n += s.kv.length
    return n
  }

  private pastFeeds(feeds: Record<string, ort.Tensor>, rows: readonly Sequence[], slots: number): void {
    const { numKvHeads: H, headDim: D } = this.shape
    for (let idx = 0; idx < this.pastNames.length; idx++) {
      const data = new Float32Array(rows.length * H * slots * D)
      for (let r = 0; r < rows.length; r++) rows[r]!.kv.writeInto(data, idx, r, slots)
      feeds[this.pastNames[idx]!] = new ort.Tensor('float32', data, [rows.length, H, slots, D])
    }
  }

  private keepPresent(out: ort.InferenceSession.ReturnType, rows: readonly Sequence[], slots: number, firstSlot: number, count: number): void {
    for (let idx = 0; idx < this.presentNames.length; idx++) {
      const present = out[this.presentNames[idx]!]!.data as Float32Array
      for (let r = 0; r < rows.length; r++) rows[r]!.kv.appendFrom(present, idx, r, slots, firstSlot, count)
    }
    for (const row of rows) row.kv.advance(count)
  }

  /**
   * Run one prompt chunk of one sequence. `token` is the first generated token when the chunk is the
   * prompt's last, else -1; `logits` are the chunk's last position's.
   */
  async prefill(entry: PrefillEntry): Promise<StepResult> {
    let seq = this.seqs.get(entry.rid)
    if (!seq) {
      if (entry.start !== 0 || entry.sampling === null) throw new RunnerError(`prefill of unknown sequence ${entry.rid} at ${entry.start}`)
      seq = { kv: new SequenceKv(this.shape), sampler: new Sampler(entry.sampling), lastToken: -1 }
      this.seqs.set(entry.rid, seq)
    }
    const past = seq.kv.length
    if (past !== entry.start) throw new RunnerError(`sequence ${entry.rid} holds ${past} tokens, chunk starts at ${entry.start}`)
    const n = entry.tokens.length
    const ids = new BigInt64Array(n)
    const pos = new BigInt64Array(n)
    for (let i = 0; i < n; i++) {
      ids[i] = BigInt(entry.tokens[i]!)
      pos[i] = BigInt(past + i)
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [1, n]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(past + n).fill(1n), [1, past + n]),
    }
    if (this.usesPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [1, n])
    this.pastFeeds(feeds, [seq], past)
    const out = await this.session.run(feeds)
    this.keepPresent(out, [seq], past + n, past, n)
    const vocab = out.logits!.dims[2]!
    const logits = (out.logits!.data as Float32Array).subarray((n - 1) * vocab, n * vocab)
    if (entry.last) seq.lastToken = seq.sampler.sample(logits, 0, vocab)
    return { tokens: Int32Array.of(entry.last ? seq.lastToken : -1), logits, vocab }
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
    let slots = 0
    for (const r of rows) slots = Math.max(slots, r.kv.length)
    const ids = new BigInt64Array(B)
    const pos = new BigInt64Array(B)
    const mask = new BigInt64Array(B * (slots + 1))
    for (let r = 0; r < B; r++) {
      const len = rows[r]!.kv.length
      ids[r] = BigInt(inputs ? inputs[r]! : rows[r]!.lastToken)
      pos[r] = BigInt(len)
      mask.fill(1n, r * (slots + 1) + (slots - len), (r + 1) * (slots + 1))
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      attention_mask: new ort.Tensor('int64', mask, [B, slots + 1]),
    }
    if (this.usesPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [B, 1])
    this.pastFeeds(feeds, rows, slots)
    const out = await this.session.run(feeds)
    this.keepPresent(out, rows, slots + 1, slots, 1)
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
