// A plain-TypeScript Llama forward pass, independent of ONNX: the yardstick the graph is tested against,
// and the calculator the builder uses to calibrate its norms. Float64 accumulation, Float32 storage.

import { ropeInvFreq, type LayerWeights, type LlamaSpec, type LlamaWeights } from './spec.ts'

/** The additive mask value: large and finite, so a fully masked row stays finite (no NaN). */
export const MASK_VALUE = -1e9

/** Rows of x (each of width d) times W [d, n] → [rows, n]. */
function matmul(x: Float32Array, rows: number, w: Float32Array, d: number, n: number): Float32Array {
  const out = new Float32Array(rows * n)
  const acc = new Float64Array(n)
  for (let r = 0; r < rows; r++) {
    acc.fill(0)
    for (let i = 0; i < d; i++) {
      const xi = x[r * d + i]!
      if (xi === 0) continue
      const base = i * n
      for (let j = 0; j < n; j++) acc[j]! += xi * w[base + j]!
    }
    out.set(acc, r * n)
  }
  return out
}

export function embed(spec: LlamaSpec, w: LlamaWeights, tokens: readonly number[]): Float32Array {
  const d = spec.hiddenSize
  const x = new Float32Array(tokens.length * d)
  tokens.forEach((t, r) => x.set(w.embed.subarray(t * d, (t + 1) * d), r * d))
  return x
}

/** Root mean square of each row: what RMSNorm divides by (before eps). */
export function rowRms(x: Float32Array, d: number): Float64Array {
  const rows = x.length / d
  const out = new Float64Array(rows)
  for (let r = 0; r < rows; r++) {
    let s = 0
    for (let i = 0; i < d; i++) s += x[r * d + i]! ** 2
    out[r] = Math.sqrt(s / d)
  }
  return out
}

export function rmsNorm(x: Float32Array, d: number, gain: Float32Array, eps: number): Float32Array {
  const rows = x.length / d
  const out = new Float32Array(x.length)
  for (let r = 0; r < rows; r++) {
    let s = 0
    for (let i = 0; i < d; i++) s += x[r * d + i]! ** 2
    const inv = 1 / Math.sqrt(s / d + eps)
    for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i]! * inv * gain[i]!
  }
  return out
}

/** Rotate each head's (i, i+half) pairs by position·freq_i, Llama's rotate_half convention. */
function applyRope(v: Float32Array, rows: number, heads: number, hd: number, positions: readonly number[], invFreq: Float64Array): void {
  const half = hd / 2
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      const base = (r * heads + h) * hd
      for (let i = 0; i < half; i++) {
        // The angle is formed in float32 as the ONNX graph does, so long positions agree too.
        const angle = Math.fround(Math.fround(positions[r]!) * Math.fround(invFreq[i]!))
        const c = Math.cos(angle)
        const s = Math.sin(angle)
        const a = v[base + i]!
        const b = v[base + i + half]!
        v[base + i] = a * c - b * s
        v[base + i + half] = b * c + a * s
      }
    }
  }
}

/**
 * Causal grouped-query self-attention of one sequence (no padding) at positions 0..T-1.
 * Returns the output projection [T, d]; probs receives per-head attention weights when given.
 */
export function attention(spec: LlamaSpec, lw: LayerWeights, h: Float32Array, probs?: Float64Array[]): Float32Array {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd } = spec
  const T = h.length / d
  const positions = Array.from({ length: T }, (_, i) => i)
  const invFreq = ropeInvFreq(spec)
  const q = matmul(h, T, lw.q, d, H * hd)
  const k = matmul(h, T, lw.k, d, KV * hd)
  const v = matmul(h, T, lw.v, d, KV * hd)
  applyRope(q, T, H, hd, positions, invFreq)
  applyRope(k, T, KV, hd, positions, invFreq)
  const group = H / KV
  const scale = 1 / Math.sqrt(hd)
  const ctx = new Float32Array(T * H * hd)
  const scores = new Float64Array(T)
  for (let head = 0; head < H; head++) {
    const kvh = Math.floor(head / group)
    const p = probs ? (probs[head] = new Float64Array(T * T)) : undefined
    for (let m = 0; m < T; m++) {
      let max = -Infinity
      for (let n = 0; n < T; n++) {
        let s = 0
        for (let i = 0; i < hd; i++) s += q[(m * H + head) * hd + i]! * k[(n * KV + kvh) * hd + i]!
        scores[n] = n <= m ? s * scale : s * scale + MASK_VALUE
        if (scores[n]! > max) max = scores[n]!
      }
      let sum = 0
      for (let n = 0; n < T; n++) sum += scores[n] = Math.exp(scores[n]! - max)
      for (let n = 0; n < T; n++) {
        const a = scores[n]! / sum
        if (p) p[m * T + n] = a
        if (a === 0) continue
        for (let i = 0; i < hd; i++) ctx[(m * H + head) * hd + i]! += a * v[(n * KV + kvh) * hd + i]!
      }
    }
  }
  return matmul(ctx, T, lw.o, H * hd, d)
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x))
}

/** SwiGLU: down(silu(gate(h)) * up(h)). */
export function mlp(spec: LlamaSpec, lw: LayerWeights, h: Float32Array): Float32Array {
  const d = spec.hiddenSize
  const m = spec.intermediateSize
  const T = h.length / d
  const g = matmul(h, T, lw.gate, d, m)
  const u = matmul(h, T, lw.up, d, m)
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]!) * u[i]!
  return matmul(g, T, lw.down, m, d)
}

export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i]! += y[i]!
}

/** Logits [T, vocab] for one unpadded sequence starting at position 0. */
export function forward(spec: LlamaSpec, w: LlamaWeights, tokens: readonly number[]): Float32Array {
  const d = spec.hiddenSize
  const x = embed(spec, w, tokens)
  for (const lw of w.layers) {
    addInPlace(x, attention(spec, lw, rmsNorm(x, d, lw.inputNorm, spec.rmsNormEps)))
    addInPlace(x, mlp(spec, lw, rmsNorm(x, d, lw.postNorm, spec.rmsNormEps)))
  }
  return matmul(rmsNorm(x, d, w.finalNorm, spec.rmsNormEps), tokens.length, w.lmHead, d, spec.vocabSize)
}
