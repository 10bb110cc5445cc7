// Seeded PRNG so that every build produces byte-identical weights (no Math.random anywhere).

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
}

/** mulberry32: tiny, fast, and good enough for weight initialisation. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  let spare: number | null = null;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    // 1 - next() keeps the logarithm's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - next()));
    const phi = 2 * Math.PI * next();
    spare = r * Math.sin(phi);
    return r * Math.cos(phi);
  };
  return { next, normal };
}

/** A random unit vector of length n, written into out[offset .. offset+n). */
export function randomUnit(rng: Rng, n: number): Float64Array {
  const v = new Float64Array(n);
  let norm = 0;
  for (let i = 0; i < n; i++) {
    v[i] = rng.normal();
    norm += v[i]! * v[i]!;
  }
  norm = Math.sqrt(norm);
  for (let i = 0; i < n; i++) v[i]! /= norm;
  return v;
}
