/**
 * Prefill and decode steps over spanserve's fused graph (src/model/fused-graph.ts), whose KV cache
 * is an input only: the graph returns the new tokens' K/V, and the runner writes them into its own
 * buffers. Against ModelRunner (runner.ts), whose Optimum graph returns past+new and which
 * onnxruntime-node copies out whole every step, a decode step moves one position per row, not the
 * whole cache.
 *
 * The resident decode batch holds per layer K and V [B, KV, C, hd], rows right-padded: row r's
 * tokens sit in slots 0..length-1, and each step writes its token at slot `length`. The capacity C
 * leaves room for a number of steps, so the batch is gathered anew (copied) only when a row would
 * pass it, when joiners find no free row, when more than a quarter of the rows are free, or when the
 * rows have shrunk far below C (attention reads all C slots). Joins and leaves cost one row, as in
 * ModelRunner: a leaver's resident tokens are written back to its own cache, a joiner's cache is
 * written into a free row. A free row runs with no cache, attending to itself; its output is ignored.
 */
import * as ort from 'onnxruntime-node'
import type { PrefillEntry } from '../ipc/messages.ts'
import { FUSED_IO } from '../model/fused-graph.ts'
import type { ModelInfo } from '../model/load.ts'
import { BatchRunner, Int64Scratch, seatJoiners, setInt64, type ResidentRows, type Sequence, type StepResult } from './batch-runner.ts'
import { copyRowSlots } from './kv-cache.ts'

/** The decode batch's KV, [B, KV, capacity, headDim] per layer and kind, rows right-padded. */
interface Resident extends ResidentRows {
  kv: Float32Array[]
  capacity: number
}

/** Slots for a batch whose longest row holds `longest` tokens: this step's and room to grow. */
export function decodeCapacity(longest: number): number {
  return longest + 1 + Math.max(32, longest >> 3)
}

export class FusedRunner extends BatchRunner<Resident> {
  /** Per layer, key then value: index 2*layer + kind, as in the KV blocks. */
  private readonly cacheNames: string[] = []
  private readonly newNames: string[] = []
  private readonly lengthScratch = new Int64Scratch()

  constructor(session: ort.InferenceSession, info: ModelInfo) {
    super(session, info)
    for (let i = 0; i < info.numLayers; i++) {
      this.cacheNames.push(FUSED_IO.cacheKey(i), FUSED_IO.cacheValue(i))
      this.newNames.push(FUSED_IO.newKey(i), FUSED_IO.newValue(i))
    }
  }

  protected evict(seq: Sequence): void {
    const res = this.resident
    if (!res || seq.row < 0) return
    const count = seq.length - seq.kv.length
    if (count > 0 && !seq.released) {
      for (let idx = 0; idx < res.kv.length; idx++) seq.kv.appendFrom(res.kv[idx]!, idx, seq.row, res.capacity, seq.kv.length, count)
      seq.kv.advance(count)
    }
    res.rows[seq.row] = null
    seq.row = -1
  }

  /** Feeds of the graph's int64 inputs: per row its tokens from position `lengths[r]`, after `lengths[r]` cached. */
  private int64Feeds(B: number, S: number, fill: (ids: Int32Array, pos: Int32Array, lengths: Int32Array) => void): Record<string, ort.Tensor> {
    const fresh = this.inFlight > 0
    const ids = this.idsScratch.take(B * S, fresh)
    const pos = this.posScratch.take(B * S, fresh)
    const lengths = this.lengthScratch.take(B, fresh)
    fill(ids.words, pos.words, lengths.words)
    return {
      [FUSED_IO.inputIds]: new ort.Tensor('int64', ids.big, [B, S]),
      [FUSED_IO.positionIds]: new ort.Tensor('int64', pos.big, [B, S]),
      [FUSED_IO.cacheLengths]: new ort.Tensor('int64', lengths.big, [B]),
    }
  }

  /**
   * Run one prompt chunk of one sequence over its cached tokens. `token` is the first generated
   * token when the chunk is the prompt's last, else -1; `logits` are the chunk's last position's.
   */
  async prefill(entry: PrefillEntry): Promise<StepResult> {
    const seq = this.beginPrefill(entry)
    const past = seq.length
    const n = entry.tokens.length
    const feeds = this.int64Feeds(1, n, (ids, pos, lengths) => {
      for (let i = 0; i < n; i++) {
        setInt64(ids, i, entry.tokens[i]!)
        setInt64(pos, i, past + i)
      }
      setInt64(lengths, 0, past)
    })
    const { numKvHeads: KV, headDim: D } = this.shape
    for (let idx = 0; idx < this.cacheNames.length; idx++) {
      const data = new Float32Array(KV * past * D)
      if (past > 0) seq.kv.writeInto(data, idx, 0, past, 0)
      feeds[this.cacheNames[idx]!] = new ort.Tensor('float32', data, [1, KV, past, D])
    }
    const out = await this.run(feeds)
    for (let idx = 0; idx < this.newNames.length; idx++) seq.kv.appendFrom(out[this.newNames[idx]!]!.data as Float32Array, idx, 0, n, 0, n)
    return this.endPrefill(seq, entry, out.logits!.data as Float32Array, out.logits!.dims[2]!)
  }

  /**
   * Make the resident batch hold exactly `seqs` (and perhaps free rows), with a slot free in every
   * row for this step's token: leavers free their rows, joiners take free rows, or the batch is
   * gathered anew when that is due (see the file comment).
   */
  private place(seqs: readonly Sequence[]): Resident {
    const res = this.resident
    let longest = 0
    for (const s of seqs) longest = Math.max(longest, s.length)
    if (res) {
      const wanted = new Set(seqs)
      for (const s of res.rows) if (s !== null && !wanted.has(s)) this.evict(s)
      let free = 0
      for (const s of res.rows) if (s === null) free++
      let joiners = 0
      for (const s of seqs) if (s.row < 0) joiners++
      const fits = joiners <= free && longest < res.capacity
      const sparse = (free - joiners) * 4 > res.rows.length
      const oversized = res.capacity > 2 * decodeCapacity(longest)
      // A run still reading the buffers (a caller not awaiting its steps) must not see them change.
      if (fits && !sparse && !oversized && this.inFlight === 0) {
        seatJoiners(res.rows, seqs, (s, r) => {
          for (let idx = 0; idx < res.kv.length; idx++) s.kv.writeInto(res.kv[idx]!, idx, r, res.capacity, 0)
        })
        return res
      }
    }
    // Gather anew, in the caller's order: resident rows from the resident buffers, the others from their own caches.
    const capacity = decodeCapacity(longest)
    const { numKvHeads: KV, headDim: D } = this.shape
    const B = seqs.length
    const kv: Float32Array[] = []
    for (let idx = 0; idx < this.cacheNames.length; idx++) {
      const data = new Float32Array(B * KV * capacity * D)
      for (let r = 0; r < B; r++) {
        const seq = seqs[r]!
        if (seq.row >= 0) copyRowSlots(this.shape, res!.kv[idx]!, seq.row, res!.capacity, 0, data, r, capacity, 0, seq.length)
        else seq.kv.writeInto(data, idx, r, capacity, 0)
      }
      kv.push(data)
    }
    seqs.forEach((s, r) => (s.row = r))
    this.resident = { rows: [...seqs], kv, capacity }
    return this.resident
  }

  /**
   * One decode step for all the given sequences in one session run: their next tokens and logits.
   * `inputs` are the sequences' last tokens when the caller knows them; by default each sequence's
   * own last sampled token.
   */
  async decode(rids: readonly string[], inputs?: Int32Array): Promise<StepResult> {
    const seqs = this.decoding(rids)
    const res = this.place(seqs)
    const B = res.rows.length
    const C = res.capacity
    const feeds = this.int64Feeds(B, 1, (ids, pos, lengths) => {
      for (let r = 0; r < B; r++) {
        const seq = res.rows[r]!
        const len = seq === null ? 0 : seq.length
        setInt64(ids, r, seq === null ? 0 : seq.lastToken)
        setInt64(pos, r, len)
        setInt64(lengths, r, len)
      }
      if (inputs) for (let i = 0; i < seqs.length; i++) setInt64(ids, seqs[i]!.row, inputs[i]!)
    })
    const { numKvHeads: KV, headDim: D } = this.shape
    for (let idx = 0; idx < this.cacheNames.length; idx++) feeds[this.cacheNames[idx]!] = new ort.Tensor('float32', res.kv[idx]!, [B, KV, C, D])
    // On failure the resident batch stays as placed: no row has gained a token.
    const out = await this.run(feeds)
    // Each row's new K/V [B, KV, 1, hd] goes into its slot `length`; nothing else moves.
    for (let idx = 0; idx < this.newNames.length; idx++) {
      const fresh = out[this.newNames[idx]!]!.data as Float32Array
      for (const seq of seqs) if (seq.row >= 0) copyRowSlots(this.shape, fresh, seq.row, 1, 0, res.kv[idx]!, seq.row, C, seq.length, 1)
    }
    for (const seq of seqs) seq.length += 1
    return this.sampleRows(seqs, out.logits!.data as Float32Array, out.logits!.dims[2]!)
  }
}
