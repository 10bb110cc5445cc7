// Bigram and trigram statistics of the tokenized corpus, and the next-token distributions they imply.

export interface NgramCounts {
  readonly vocabSize: number
  readonly unigram: Float64Array
  /** cur → (next → count) */
  readonly bigram: Map<number, Map<number, number>>
  /** prev*vocabSize+cur → (next → count) */
  readonly trigram: Map<number, Map<number, number>>
}

export function countNgrams(stream: readonly number[], vocabSize: number): NgramCounts {
  const unigram = new Float64Array(vocabSize)
  const bigram = new Map<number, Map<number, number>>()
  const trigram = new Map<number, Map<number, number>>()
  const bump = (m: Map<number, Map<number, number>>, key: number, next: number): void => {
    let inner = m.get(key)
    if (!inner) m.set(key, (inner = new Map()))
    inner.set(next, (inner.get(next) ?? 0) + 1)
  }
  for (let i = 0; i < stream.length; i++) {
    unigram[stream[i]!]! += 1
    if (i + 1 < stream.length) bump(bigram, stream[i]!, stream[i + 1]!)
    if (i + 2 < stream.length) bump(trigram, stream[i]! * vocabSize + stream[i + 1]!, stream[i + 2]!)
  }
  return { vocabSize, unigram, bigram, trigram }
}

/** The K most likely next tokens, most likely first; equal probabilities go to the smaller id. */
export interface Prediction {
  readonly ids: number[]
  readonly probs: number[]
}

// Additive smoothing weights: how much a context's counts defer to the shorter context.
const BIGRAM_PRIOR = 0.5
const TRIGRAM_PRIOR = 1

function unigramDist(c: NgramCounts): Float64Array {
  let total = 0
  for (const n of c.unigram) total += n
  return c.unigram.map((n) => (n + 0.01) / (total + 0.01 * c.vocabSize))
}

function interpolate(counts: Map<number, number> | undefined, prior: Float64Array, weight: number): Float64Array {
  let n = 0
  if (counts) for (const v of counts.values()) n += v
  const out = prior.map((p) => (weight * p) / (n + weight))
  if (counts) for (const [w, v] of counts) out[w]! += v / (n + weight)
  return out
}

function topK(dist: Float64Array, k: number): Prediction {
  // Insertion into a short sorted list: linear in the vocabulary, unlike a full sort.
  const ids: number[] = []
  for (let i = 0; i < dist.length; i++) {
    const p = dist[i]!
    if (ids.length === k && p <= dist[ids[k - 1]!]!) continue
    let j = ids.length === k ? k - 1 : ids.length
    while (j > 0 && dist[ids[j - 1]!]! < p) j--
    ids.splice(j, 0, i)
    if (ids.length > k) ids.pop()
  }
  return { ids, probs: ids.map((i) => dist[i]!) }
}

export class NgramModel {
  private readonly uni: Float64Array
  private readonly bigramCache = new Map<number, Float64Array>()

  constructor(readonly counts: NgramCounts) {
    this.uni = unigramDist(counts)
  }

  bigramDist(cur: number): Float64Array {
    let d = this.bigramCache.get(cur)
    if (!d) this.bigramCache.set(cur, (d = interpolate(this.counts.bigram.get(cur), this.uni, BIGRAM_PRIOR)))
    return d
  }

  trigramDist(prev: number, cur: number): Float64Array {
    return interpolate(this.counts.trigram.get(prev * this.counts.vocabSize + cur), this.bigramDist(cur), TRIGRAM_PRIOR)
  }

  bigram(cur: number, k: number): Prediction {
    return topK(this.bigramDist(cur), k)
  }

  trigram(prev: number, cur: number, k: number): Prediction {
    return topK(this.trigramDist(prev, cur), k)
  }

  /**
   * Trigram contexts worth a neuron: those whose most likely next token differs from the bigram's,
   * most frequent first (so a neuron budget keeps the most useful ones).
   */
  usefulTrigramContexts(): { prev: number; cur: number; count: number }[] {
    const V = this.counts.vocabSize
    const out: { prev: number; cur: number; count: number }[] = []
    for (const [key, nexts] of this.counts.trigram) {
      const prev = Math.floor(key / V)
      const cur = key % V
      if (this.trigram(prev, cur, 1).ids[0] === this.bigram(cur, 1).ids[0]) continue
      let count = 0
      for (const v of nexts.values()) count += v
      out.push({ prev, cur, count })
    }
    return out.sort((a, b) => b.count - a.count || a.prev - b.prev || a.cur - b.cur)
  }
}
