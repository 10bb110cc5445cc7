// Seeded random Llama weights: the tiny models of the tests, and the filler layers of the built model.

import { createRng, type Rng } from './rng.ts'
import type { LayerWeights, LlamaSpec, LlamaWeights } from './spec.ts'

function gaussian(rng: Rng, n: number, std: number): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std
  return a
}

/**
 * One layer with fan-in scaled weights; `outScale` shrinks o_proj and down_proj, so that a layer
 * whose outScale is small barely changes the residual stream it adds to.
 */
export function randomLayer(spec: LlamaSpec, rng: Rng, outScale: number): LayerWeights {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m } = spec
  const inStd = 1 / Math.sqrt(d)
  return {
    inputNorm: new Float32Array(d).fill(1),
    q: gaussian(rng, d * H * hd, inStd),
    k: gaussian(rng, d * KV * hd, inStd),
    v: gaussian(rng, d * KV * hd, inStd),
    o: gaussian(rng, H * hd * d, outScale / Math.sqrt(H * hd)),
    postNorm: new Float32Array(d).fill(1),
    gate: gaussian(rng, d * m, inStd),
    up: gaussian(rng, d * m, inStd),
    down: gaussian(rng, m * d, outScale / Math.sqrt(m)),
  }
}

/** A whole random model (tests of the generic graph). */
export function randomLlamaWeights(spec: LlamaSpec, seed: number): LlamaWeights {
  const rng = createRng(seed)
  const d = spec.hiddenSize
  const norm = (): Float32Array => Float32Array.from({ length: d }, () => 1 + 0.1 * rng.normal())
  return {
    embed: gaussian(rng, spec.vocabSize * d, 1),
    layers: Array.from({ length: spec.numLayers }, () => ({ ...randomLayer(spec, rng, 1), inputNorm: norm(), postNorm: norm() })),
    finalNorm: norm(),
    lmHead: gaussian(rng, d * spec.vocabSize, 1 / Math.sqrt(d)),
  }
}
