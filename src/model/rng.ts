/**
 * The one seeded generator: weight building (every build byte-identical, no Math.random anywhere) and
 * the worker's token sampler (the same seed gives the same tokens) both draw from it.
 */

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number
  /** Standard normal (Box-Muller). */
  normal(): number
}

/**
 * mulberry32: small, fast and good enough for both jobs; state is one 32-bit word. The state walks a
 * Weyl sequence (seed + n * 0x6d2b79f5) that each draw hashes, so the n-th draw is a function of
 * (seed, n) alone: `skip` starts n draws in (a resumed request continues the same sequence).
 */
export class SeededRandom implements Rng {
  private state: number
  private spare: number | null = null

  constructor(seed: number, skip = 0) {
    this.state = (seed + Math.imul(skip, 0x6d2b79f5)) >>> 0
  }

  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  normal(): number {
    if (this.spare !== null) {
      const s = this.spare
      this.spare = null
      return s
    }
    // 1 - next() keeps the logarithm's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - this.next()))
    const phi = 2 * Math.PI * this.next()
    this.spare = r * Math.sin(phi)
    return r * Math.cos(phi)
  }
}

export function createRng(seed: number): Rng {
  return new SeededRandom(seed)
}

/** A random unit vector of length n. */
export function randomUnit(rng: Rng, n: number): Float64Array {
  const v = new Float64Array(n)
  let norm = 0
  for (let i = 0; i < n; i++) {
    v[i] = rng.normal()
    norm += v[i]! * v[i]!
  }
  norm = Math.sqrt(norm)
  for (let i = 0; i < n; i++) v[i]! /= norm
  return v
}
