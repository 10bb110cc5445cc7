/**
 * The sampler's reference pieces, shared by its tests and bench/sampler-micro.ts: the full-sort
 * sampler the worker's partial selection replaced (both must draw the same tokens), logits shaped like
 * a model's, and the sampling cases both compare on.
 */
import type { SamplingParams } from '../src/ipc/messages.ts'
import { SeededRandom } from '../src/model/rng.ts'

/** The sampler as it was: sort the whole vocabulary per token. */
export class FullSortSampler {
  private readonly rng: SeededRandom
  constructor(readonly params: SamplingParams) {
    this.rng = new SeededRandom(params.seed ?? 0)
  }
  sample(logits: Float32Array, offset: number, vocab: number): number {
    const { temperature, topK, topP } = this.params
    const order = new Int32Array(vocab)
    const probs = new Float64Array(vocab)
    for (let i = 0; i < vocab; i++) order[i] = i
    order.sort((a, b) => logits[offset + b]! - logits[offset + a]! || a - b)
    const k = topK > 0 ? Math.min(topK, vocab) : vocab
    const max = logits[offset + order[0]!]!
    let sum = 0
    for (let i = 0; i < k; i++) {
      const p = Math.exp((logits[offset + order[i]!]! - max) / temperature)
      probs[i] = p
      sum += p
    }
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

/** Logits shaped like a language model's: a few strong candidates over a long, noisy tail. */
export function fakeLogits(vocab: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed)
  const out = new Float32Array(vocab)
  for (let i = 0; i < vocab; i++) {
    // Sum of uniforms ~ normal; scale like real logits; a handful of peaks.
    out[i] = (rng.next() + rng.next() + rng.next() - 1.5) * 4
  }
  for (let j = 0; j < 8; j++) out[Math.floor(rng.next() * vocab)] = 8 + rng.next() * 4
  return out
}

export const CASES: { name: string; params: Omit<SamplingParams, 'seed'> }[] = [
  { name: 'T=0.8 top_k=50', params: { temperature: 0.8, topK: 50, topP: 1 } },
  { name: 'T=0.8 top_p=0.9', params: { temperature: 0.8, topK: 0, topP: 0.9 } },
  { name: 'T=1 (no top-k/p)', params: { temperature: 1, topK: 0, topP: 1 } },
  { name: 'T=0.7 top_k=40 top_p=0.95', params: { temperature: 0.7, topK: 40, topP: 0.95 } },
]
