/**
 * Token sampling on the worker (rank 0), one Sampler per sequence: the sequence's logits processors
 * (penalties, logit bias, min_tokens) adjust a copy of its logits, then greedy at temperature 0,
 * otherwise temperature, min-p, top-k and top-p over a seeded generator, so the same seed gives the
 * same tokens. Each sampled token is accepted: the processors see it. A sequence that uses none of
 * the adjustments samples the model's row as it is, with no copy.
 *
 * Candidates are ranked by logit, descending, ties by token id. No step sorts the whole vocabulary
 * (32k–150k entries in real models): top-k selects its k candidates in one pass and sorts only those;
 * without top-k, candidates are sorted band by band (probability ≥ 1/16 of the best, then ≥ 2^-10, …)
 * and only as many bands as the top-p cut and the draw reach. The ranking of what is sorted is the
 * full sort's, so the tokens drawn are the full sort's for the same seed (the one difference: without
 * top-k the total probability mass is summed in token order rather than rank order, which can move a
 * draw that falls within rounding error, ~1e-16 relative, of a boundary).
 */
import { randomInt } from 'node:crypto'
import { SeededRandom } from '../model/rng.ts'
import { adjustsLogits, type SamplingParams } from '../sampling/params.ts'
import type { LogitsProcessor } from './logits-processor.ts'
import { Penalties } from './penalties.ts'
import { grammarProcessor } from './grammar.ts'

export function argmax(logits: Float32Array, offset: number, size: number): number {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < size; i++) {
    const v = logits[offset + i]!
    if (v > bestValue) {
      bestValue = v
      best = i
    }
  }
  return best
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)
let keys = new Float64Array(0)
/** Token ids fit the low bits of a packed sort key up to this vocabulary size. */
const ID_BITS = 20

/**
 * Sort ids[0..n) by logit descending, ties by id ascending (the full sort's order). Each (logit, id)
 * is packed into one float64 whose numeric order is that order, so the sort runs natively, without a
 * comparator call per comparison: the float32's bits made order-preserving (32 bits), complemented
 * for descending, times 2^20, plus the id.
 */
function rank(ids: Int32Array, n: number, logits: Float32Array, offset: number): void {
  if (n < 2) return
  if (logits.length - offset > 2 ** ID_BITS || n < 16) {
    ids.subarray(0, n).sort((a, b) => logits[offset + b]! - logits[offset + a]! || a - b)
    return
  }
  if (keys.length < n) keys = new Float64Array(Math.max(n, keys.length * 2))
  const k = keys.subarray(0, n)
  for (let i = 0; i < n; i++) {
    const id = ids[i]!
    f32[0] = logits[offset + id]!
    const bits = u32[0]!
    // Ascending-orderable bits: negative floats flipped whole, positive ones get the top bit set.
    const asc = bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0
    k[i] = (0xffffffff - asc) * 2 ** ID_BITS + id
  }
  k.sort()
  const mask = 2 ** ID_BITS
  for (let i = 0; i < n; i++) ids[i] = k[i]! % mask
}

/**
 * The k best token ids, ranked, into `out`: the k-th best logit found with a k-entry min-heap, then
 * every id above it and the lowest ids equal to it. O(vocab + k log k).
 */
export function topKIds(logits: Float32Array, offset: number, vocab: number, k: number, out: Int32Array, heap: Float32Array): void {
  // Min-heap of the k largest values seen.
  let size = 0
  for (let i = 0; i < vocab; i++) {
    const v = logits[offset + i]!
    if (size < k) {
      let j = size++
      while (j > 0) {
        const p = (j - 1) >> 1
        if (heap[p]! <= v) break
        heap[j] = heap[p]!
        j = p
      }
      heap[j] = v
    } else if (v > heap[0]!) {
      let j = 0
      for (;;) {
        const l = 2 * j + 1
        if (l >= k) break
        const c = l + 1 < k && heap[l + 1]! < heap[l]! ? l + 1 : l
        if (heap[c]! >= v) break
        heap[j] = heap[c]!
        j = c
      }
      heap[j] = v
    }
  }
  const kth = heap[0]!
  let n = 0
  for (let i = 0; i < vocab; i++) if (logits[offset + i]! > kth) out[n++] = i
  for (let i = 0; i < vocab && n < k; i++) if (logits[offset + i]! === kth) out[n++] = i
  rank(out, k, logits, offset)
}

/**
 * min-p: tokens less likely than min_p times the best token after temperature are dropped (-inf).
 * p / p_best = exp((l - l_best) / T) < min_p exactly when l < l_best + T ln(min_p).
 */
function maskBelowMinP(row: Float32Array, vocab: number, minP: number, temperature: number): void {
  let max = -Infinity
  for (let i = 0; i < vocab; i++) if (row[i]! > max) max = row[i]!
  const cut = max + temperature * Math.log(minP)
  for (let i = 0; i < vocab; i++) if (row[i]! < cut) row[i] = -Infinity
}

/** Probability bands (relative to the best token's), highest first; the last takes the rest. */
const BANDS = [2 ** -4, 2 ** -10, 2 ** -20, 0]

export class Sampler {
  private readonly rng: SeededRandom | null
  /** null: nothing adjusts the logits. */
  private readonly processors: LogitsProcessor[] | null
  private readonly minP: number
  // Scratch reused across steps: one allocation per sequence, not per token.
  private order: Int32Array | null = null
  private probs: Float64Array | null = null
  private heap: Float32Array | null = null
  /** The adjusted copy of the row (processors or min-p only). */
  private row: Float32Array | null = null

  constructor(readonly params: SamplingParams) {
    this.rng = params.temperature > 0 ? new SeededRandom(params.seed ?? randomInt(0, 2 ** 32 - 1), params.draws ?? 0) : null
    // A grammar (src/worker/grammar.ts) comes last: its mask has the final word.
    const grammar = grammarProcessor(params)
    const processors: LogitsProcessor[] = adjustsLogits(params) ? [new Penalties(params)] : []
    if (grammar) processors.push(grammar)
    this.processors = processors.length > 0 ? processors : null
    // min-p changes nothing under greedy: the best token always passes.
    this.minP = this.rng !== null ? (params.minP ?? 0) : 0
    // A resumed request's tokens so far count as generated.
    for (const token of params.generatedIds ?? []) this.accept(token)
  }

  /** The next token of this sequence from its logits at [offset, offset + vocab); it is accepted. */
  sample(logits: Float32Array, offset: number, vocab: number): number {
    if (this.processors !== null || this.minP > 0) {
      if (this.row === null || this.row.length < vocab) this.row = new Float32Array(vocab)
      const row = this.row.subarray(0, vocab)
      row.set(logits.subarray(offset, offset + vocab))
      for (const p of this.processors ?? []) p.apply(row, 0, vocab)
      if (this.minP > 0) maskBelowMinP(row, vocab, this.minP, this.params.temperature)
      logits = row
      offset = 0
    }
    const token = this.draw(logits, offset, vocab)
    this.accept(token)
    return token
  }

  /** The sequence took `token`: every processor sees it. */
  accept(token: number): void {
    if (this.processors === null) return
    for (const p of this.processors) p.accept(token)
  }

  private draw(logits: Float32Array, offset: number, vocab: number): number {
    if (this.rng === null) return argmax(logits, offset, vocab)
    const { topK } = this.params
    if (this.order === null || this.order.length < vocab) {
      this.order = new Int32Array(vocab)
      this.probs = new Float64Array(vocab)
    }
    if (topK > 0 && topK < vocab) return this.sampleTopK(logits, offset, vocab, topK)
    return this.sampleAll(logits, offset, vocab)
  }

  /** top-k: the k candidates ranked, then exactly the full sort's arithmetic over them. */
  private sampleTopK(logits: Float32Array, offset: number, vocab: number, k: number): number {
    const { temperature, topP } = this.params
    if (this.heap === null || this.heap.length < k) this.heap = new Float32Array(k)
    const order = this.order!
    const probs = this.probs!
    topKIds(logits, offset, vocab, k, order, this.heap)
    const max = logits[offset + order[0]!]!
    let sum = 0
    for (let i = 0; i < k; i++) {
      const p = Math.exp((logits[offset + order[i]!]! - max) / temperature)
      probs[i] = p
      sum += p
    }
    // Keep the smallest prefix whose mass reaches top_p.
    let n = k
    if (topP < 1) {
      let acc = 0
      for (let i = 0; i < k; i++) {
        acc += probs[i]! / sum
        if (acc >= topP) {
          n = i + 1
          break
        }
      }
    }
    let mass = 0
    for (let i = 0; i < n; i++) mass += probs[i]!
    let r = this.rng!.next() * mass
    for (let i = 0; i < n; i++) {
      r -= probs[i]!
      if (r <= 0) return order[i]!
    }
    return order[n - 1]!
  }

  /**
   * No top-k: every token is a candidate. Probabilities are computed by token id; candidates are
   * ranked band by band, only as far as the top-p cut and then the draw need.
   */
  private sampleAll(logits: Float32Array, offset: number, vocab: number): number {
    const { temperature, topP } = this.params
    const order = this.order!
    const byId = this.probs! // probability of token i at [i]
    let max = -Infinity
    for (let i = 0; i < vocab; i++) if (logits[offset + i]! > max) max = logits[offset + i]!
    let sum = 0
    for (let i = 0; i < vocab; i++) {
      const p = Math.exp((logits[offset + i]! - max) / temperature)
      byId[i] = p
      sum += p
    }
    // order[0..ranked) holds the candidates ranked so far; bands are taken in turn.
    let ranked = 0
    let band = 0
    const nextBand = (): boolean => {
      if (band >= BANDS.length) return false
      const lo = BANDS[band]!
      const hi = band === 0 ? Infinity : BANDS[band - 1]!
      band++
      const first = ranked
      for (let i = 0; i < vocab; i++) {
        const p = byId[i]!
        if (p >= lo && p < hi) order[ranked++] = i
      }
      rank(order.subarray(first), ranked - first, logits, offset)
      return true
    }
    // The top-p prefix: grow it band by band until its mass reaches top_p (the full sort's loop).
    let n = vocab
    if (topP < 1) {
      let acc = 0
      let i = 0
      search: for (;;) {
        for (; i < ranked; i++) {
          acc += byId[order[i]!]! / sum
          if (acc >= topP) {
            n = i + 1
            break search
          }
        }
        if (!nextBand()) break
      }
    }
    let mass = sum
    if (n < vocab) {
      mass = 0
      for (let i = 0; i < n; i++) mass += byId[order[i]!]!
    }
    let r = this.rng!.next() * mass
    let i = 0
    for (;;) {
      for (; i < Math.min(ranked, n); i++) {
        r -= byId[order[i]!]!
        if (r <= 0) return order[i]!
      }
      if (i >= n || !nextBand()) break
    }
    while (ranked < n && nextBand()) {
      /* rank to the end of the prefix for its last token */
    }
    return order[Math.max(0, Math.min(n, ranked) - 1)]!
  }
}
