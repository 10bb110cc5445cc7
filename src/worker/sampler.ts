/**
 * Token sampling on the worker (rank 0): greedy at temperature 0, otherwise temperature, top-k and
 * top-p over a seeded generator, so the same seed gives the same tokens.
 */
import { randomInt } from 'node:crypto'
import type { SamplingParams } from '../ipc/messages.ts'

/** mulberry32: small, fast and good enough for sampling; state is one 32-bit word. */
export class SeededRandom {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

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

export class Sampler {
  private readonly rng: SeededRandom | null
  // Scratch reused across steps: one allocation per sequence, not per token.
  private order: Int32Array | null = null
  private probs: Float64Array | null = null

  constructor(readonly params: SamplingParams) {
    this.rng = params.temperature > 0 ? new SeededRandom(params.seed ?? randomInt(0, 2 ** 32 - 1)) : null
  }

  sample(logits: Float32Array, offset: number, vocab: number): number {
    if (this.rng === null) return argmax(logits, offset, vocab)
    const { temperature, topK, topP } = this.params
    this.order ??= new Int32Array(vocab)
    this.probs ??= new Float64Array(vocab)
    const order = this.order
    const probs = this.probs
    for (let i = 0; i < vocab; i++) order[i] = i
    // Sort candidates by logit, descending; ties by token id so the order is deterministic.
    order.sort((a, b) => logits[offset + b]! - logits[offset + a]! || a - b)
    const k = topK > 0 ? Math.min(topK, vocab) : vocab
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
    let r = this.rng.next() * mass
    for (let i = 0; i < n; i++) {
      r -= probs[i]!
      if (r <= 0) return order[i]!
    }
    return order[n - 1]!
  }
}
