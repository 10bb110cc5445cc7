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
import type { PrefillEntry } from '../ipc/messages.ts'
import type { ModelInfo } from '../model/load.ts'
import { BatchRunner, Int64Scratch, seatJoiners, setInt64, type ResidentRows, type Sequence, type StepResult } from './batch-runner.ts'
import { copyBatchRow } from './kv-cache.ts'

export { RunnerError, rowLogits, type StepResult } from './batch-runner.ts'

/** The decode batch's KV: `present.*` of the last step, [B, heads, slots, headDim] each. */
interface Resident extends ResidentRows {
  kv: Float32Array[]
  slots: number
}

export class ModelRunner extends BatchRunner<Resident> {
  private readonly pastNames: string[]
  private readonly presentNames: string[]
  readonly usesPositionIds: boolean
  private readonly maskScratch = new Int64Scratch()

  constructor(session: ort.InferenceSession, info: ModelInfo) {
    super(session, info)
    this.pastNames = []
    this.presentNames = []
    for (let i = 0; i < info.numLayers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`)
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`)
    }
    this.usesPositionIds = session.inputNames.includes('position_ids')
  }

  /** Take a sequence out of the resident batch, the tokens it holds beyond its own cache written back into that cache; its row becomes free. */
  protected evict(seq: Sequence): void {
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
    const seq = this.beginPrefill(entry)
    const past = seq.length
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
    return this.endPrefill(seq, entry, out.logits!.data as Float32Array, out.logits!.dims[2]!)
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
        const { kv, slots } = res
        seatJoiners(res.rows, seqs, (s, r) => {
          for (let idx = 0; idx < kv.length; idx++) s.kv.writeInto(kv[idx]!, idx, r, slots)
        })
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
    const seqs = this.decoding(rids)
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
    return this.sampleRows(seqs, out.logits!.data as Float32Array, out.logits!.dims[2]!)
  }
}
