// Hand-built weights that make a Llama decoder compute a smoothed trigram model of the corpus.
//
// Residual stream layout (width d): [const | C: current token | P: previous token | O: output].
// - Embedding: const = 1 and a random unit vector e_t in C (the "bias" Llama lacks comes from const).
// - Layer 0 attention: on some heads, q and k read only const and k is pre-rotated by one RoPE step,
//   so the score peaks at relative distance 1: the head copies the previous token's C into P.
// - Layer 0 MLP (SwiGLU): one neuron per token (fires when C matches: bigram) and one per useful
//   (prev, cur) pair (fires when C and P both match: trigram); each writes the context's next-token
//   logits into O, a trigram neuron replacing its bigram neuron's output rather than adding to it.
// - LM head: token w reads a random unit vector f_w in O. Later layers are small random weights.

import type { NgramModel, Prediction } from './ngram.ts'
import type { Preset } from './presets.ts'
import { addInPlace, attention, embed, mlp, rmsNorm, rowRms, silu } from './reference.ts'
import { randomLayer } from './random-weights.ts'
import { createRng, randomUnit, type Rng } from './rng.ts'
import { ropeInvFreq, type LayerWeights, type LlamaSpec, type LlamaWeights } from './spec.ts'

/** Next tokens listed per context; the rest of the vocabulary sits near logit 0. */
const TOP_K = 5
/** Logit of a listed token: LOGIT_OFFSET + ln p, so unlisted tokens keep well under 1% of the mass. */
const LOGIT_OFFSET = 12
/** Gate sharpness: a matching neuron's gate is +GATE_GAIN/2, a non-matching one about -GATE_GAIN/2. */
const GATE_GAIN = 64
/** O is written this small so the final RMSNorm's divisor barely depends on it; its gain undoes it. */
const OUTPUT_SCALE = 0.02
/** Logit taken off every token that is not text on its own (bpe.ts isTextToken): never sampled. */
const NOT_TEXT_LOGIT = 100
/** Softmax margin (in logits) of the previous-token head over every other position. */
const PREV_TOKEN_MARGIN = 30
/** Filler layers add this fraction of their input's size to the residual stream. */
const FILLER_SCALE = 2e-4

interface Layout {
  readonly constDim: number
  readonly cStart: number
  readonly pStart: number
  /** Width of C and of P. */
  readonly idDims: number
  readonly oStart: number
  readonly oDims: number
}

function layoutFor(spec: LlamaSpec): Layout {
  // P is filled through attention heads, one KV head per headDim dimensions, and O needs the most room.
  const idDims = Math.min(spec.numKvHeads * spec.headDim, Math.floor((spec.hiddenSize - 1) / 4))
  return { constDim: 0, cStart: 1, pStart: 1 + idDims, idDims, oStart: 1 + 2 * idDims, oDims: spec.hiddenSize - 1 - 2 * idDims }
}

export interface NgramBuildInfo {
  readonly bigramNeurons: number
  readonly trigramNeurons: number
  /** Smallest attention weight the previous-token head puts on position m-1, over all m. */
  readonly prevTokenMinWeight: number
}

function zeros(n: number): Float32Array {
  return new Float32Array(n)
}

/** Min-norm u in O with f_w·u = logit_w for each listed w: listed logits exact, the rest small. */
function outputVector(pred: Prediction, f: readonly Float64Array[], oDims: number): Float64Array {
  const K = pred.ids.length
  const logits = pred.probs.map((p, r) => Math.max(1, LOGIT_OFFSET + Math.log(p) - 0.05 * r)) // distinct: no exact ties
  const gram = Array.from({ length: K }, (_, a) =>
    Array.from({ length: K }, (_, b) => {
      let s = 0
      for (let i = 0; i < oDims; i++) s += f[pred.ids[a]!]![i]! * f[pred.ids[b]!]![i]!
      return s
    }),
  )
  const coef = solve(gram, logits)
  const u = new Float64Array(oDims)
  for (let a = 0; a < K; a++) for (let i = 0; i < oDims; i++) u[i]! += coef[a]! * f[pred.ids[a]!]![i]!
  return u
}

/** Gaussian elimination with partial pivoting (K is tiny). */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length
  const m = a.map((row, i) => [...row, b[i]!])
  for (let c = 0; c < n; c++) {
    let piv = c
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[piv]![c]!)) piv = r
    ;[m[c], m[piv]] = [m[piv]!, m[c]!]
    for (let r = 0; r < n; r++) {
      if (r === c) continue
      const factor = m[r]![c]! / m[c]![c]!
      for (let k = c; k <= n; k++) m[r]![k]! -= factor * m[c]![k]!
    }
  }
  return m.map((row, i) => row[n]! / row[i]!)
}

/** Per-pair q amplitude² (one per rotary pair) and the score scale giving PREV_TOKEN_MARGIN. */
function previousTokenAmplitude(spec: LlamaSpec): number {
  const theta = ropeInvFreq(spec)
  // gap(δ) = Σ_i (1 - cos δθ_i): how far a key at relative offset δ+1 scores below the peak.
  let gap = Infinity
  for (let delta = -1; delta < spec.maxPositions; delta++) {
    if (delta === 0) continue
    let s = 0
    for (const t of theta) s += 1 - Math.cos(delta * t)
    gap = Math.min(gap, s)
  }
  // score = a² Σ cos(δθ_i) / sqrt(headDim); choose a² so the smallest gap is PREV_TOKEN_MARGIN logits.
  return Math.sqrt((PREV_TOKEN_MARGIN * Math.sqrt(spec.headDim)) / gap)
}

/** Layer 0 attention: previous-token heads copy C into P; the other heads write nothing. */
function previousTokenAttention(spec: LlamaSpec, lay: Layout): Pick<LayerWeights, 'q' | 'k' | 'v' | 'o'> {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd } = spec
  const half = hd / 2
  const group = H / KV
  const q = zeros(d * H * hd)
  const k = zeros(d * KV * hd)
  const v = zeros(d * KV * hd)
  const o = zeros(H * hd * d)
  const amp = previousTokenAmplitude(spec)
  const theta = ropeInvFreq(spec)
  const c = lay.constDim
  for (let kv = 0; kv * hd < lay.idDims; kv++) {
    const head = kv * group // the first query head of this KV head's group
    for (let i = 0; i < half; i++) {
      q[c * H * hd + head * hd + i] = amp
      // k = R(θ_i)·q per pair, so q_m·k_n = amp² Σ cos((m-n-1)θ_i): highest at n = m-1.
      k[c * KV * hd + kv * hd + i] = amp * Math.cos(theta[i]!)
      k[c * KV * hd + kv * hd + i + half] = amp * Math.sin(theta[i]!)
    }
    for (let j = 0; j < hd && kv * hd + j < lay.idDims; j++) {
      v[(lay.cStart + kv * hd + j) * KV * hd + kv * hd + j] = 1
      o[(head * hd + j) * d + lay.pStart + kv * hd + j] = 1
    }
  }
  return { q, k, v, o }
}

/**
 * The smallest weight, over query positions 1..maxPositions-1, that head 0 of layer 0 puts on the
 * previous position, for inputs whose normalised const dimension is constValue (scores depend on
 * the relative offset only, so prefix sums over offsets cover every position at once).
 */
function previousTokenMinWeight(spec: LlamaSpec, layer0: LayerWeights, constValue: number): number {
  const hd = spec.headDim
  const half = hd / 2
  const theta = ropeInvFreq(spec)
  const qv = Array.from({ length: hd }, (_, i) => layer0.q[i]! * constValue) // const is row 0, head 0 is first
  const kv = Array.from({ length: hd }, (_, i) => layer0.k[i]! * constValue)
  const score = new Float64Array(spec.maxPositions) // by offset m-n
  for (let off = 0; off < spec.maxPositions; off++) {
    let s = 0
    for (let i = 0; i < half; i++) {
      // q·R(-off·θ)·k for the pair (i, i+half)
      const a = off * theta[i]!
      const ca = Math.cos(a)
      const sa = Math.sin(a)
      s += qv[i]! * (kv[i]! * ca + kv[i + half]! * sa) + qv[i + half]! * (kv[i + half]! * ca - kv[i]! * sa)
    }
    score[off] = s / Math.sqrt(hd)
  }
  let min = 1
  let denom = 0
  for (let m = 0; m < spec.maxPositions; m++) {
    denom += Math.exp(score[m]! - score[1]!)
    if (m >= 1) min = Math.min(min, 1 / denom)
  }
  return min
}

function mean(a: Float64Array): number {
  let s = 0
  for (const v of a) s += v
  return s / a.length
}

/**
 * Weights of a preset's architecture computing the corpus's trigram model. `calibration` is a
 * token sequence from the corpus on which the RMSNorm gains are fitted to the real activations.
 */
export function buildNgramWeights(
  preset: Preset,
  model: NgramModel,
  calibration: readonly number[],
  /** Per token id: false for a token the model must never emit. */
  emittable: readonly boolean[] = [],
): { spec: LlamaSpec; weights: LlamaWeights; info: NgramBuildInfo } {
  const V = model.counts.vocabSize
  const contexts = model.usefulTrigramContexts()
  const fixedWidth = preset.intermediateSize === 'auto' ? null : preset.intermediateSize
  const trigrams = fixedWidth === null ? contexts : contexts.slice(0, Math.max(0, fixedWidth - V))
  const neurons = V + trigrams.length
  const spec: LlamaSpec = {
    hiddenSize: preset.hiddenSize,
    numLayers: preset.numLayers,
    numHeads: preset.numHeads,
    numKvHeads: preset.numKvHeads,
    headDim: preset.headDim,
    intermediateSize: fixedWidth ?? Math.ceil(neurons / 64) * 64,
    vocabSize: V,
    maxPositions: preset.maxPositions,
    ropeTheta: preset.ropeTheta,
    rmsNormEps: preset.rmsNormEps,
  }
  if (spec.intermediateSize < V) throw new Error(`intermediateSize ${spec.intermediateSize} < vocabulary ${V}`)
  const d = spec.hiddenSize
  const m = spec.intermediateSize
  const lay = layoutFor(spec)
  const rng: Rng = createRng(preset.seed)

  const ids = Array.from({ length: V }, () => randomUnit(rng, lay.idDims))
  const outs = Array.from({ length: V }, () => randomUnit(rng, lay.oDims))

  const embedW = zeros(V * d)
  const lmHead = zeros(d * V)
  for (let t = 0; t < V; t++) {
    embedW[t * d + lay.constDim] = 1
    for (let i = 0; i < lay.idDims; i++) embedW[t * d + lay.cStart + i] = ids[t]![i]!
    for (let i = 0; i < lay.oDims; i++) lmHead[(lay.oStart + i) * V + t] = outs[t]![i]!
    // The const component (about 1 after the final norm) reads as a large negative bias.
    if (emittable[t] === false) lmHead[lay.constDim * V + t] = -NOT_TEXT_LOGIT
  }

  // Layer 0 MLP. A firing neuron's gate is GATE_GAIN/2 and its up is const ≈ 1.
  const gate = zeros(d * m)
  const up = zeros(d * m)
  const down = zeros(m * d)
  const fired = silu(GATE_GAIN / 2)
  const bigramOut = Array.from({ length: V }, (_, t) => outputVector(model.bigram(t, TOP_K), outs, lay.oDims))
  const writeNeuron = (n: number, reads: [number, Float64Array][], threshold: number, out: Float64Array): void => {
    for (const [start, vec] of reads) for (let i = 0; i < vec.length; i++) gate[(start + i) * m + n] = GATE_GAIN * vec[i]!
    gate[lay.constDim * m + n] = -GATE_GAIN * threshold
    up[lay.constDim * m + n] = 1
    for (let i = 0; i < lay.oDims; i++) down[n * d + lay.oStart + i] = (OUTPUT_SCALE * out[i]!) / fired
  }
  for (let t = 0; t < V; t++) writeNeuron(t, [[lay.cStart, ids[t]!]], 0.5, bigramOut[t]!)
  trigrams.forEach(({ prev, cur }, j) => {
    const target = outputVector(model.trigram(prev, cur, TOP_K), outs, lay.oDims)
    const delta = target.map((v, i) => v - bigramOut[cur]![i]!) // the bigram neuron fires too
    writeNeuron(
      V + j,
      [
        [lay.cStart, ids[cur]!],
        [lay.pStart, ids[prev]!],
      ],
      1.5,
      delta,
    )
  })

  const layer0: LayerWeights = {
    ...previousTokenAttention(spec, lay),
    inputNorm: zeros(d),
    postNorm: zeros(d),
    gate,
    up,
    down,
  }
  const layers = [layer0]
  for (let l = 1; l < spec.numLayers; l++) layers.push(randomLayer(spec, rng, FILLER_SCALE))
  const finalNorm = zeros(d)
  const weights: LlamaWeights = { embed: embedW, layers, finalNorm, lmHead }

  // Calibrate the norms on real activations, in forward order: layer 0's gains make its normalised
  // input equal its raw input (const ≈ 1, unit C and P), which the thresholds above assume.
  const x = embed(spec, weights, calibration)
  layer0.inputNorm.fill(mean(rowRms(x, d)))
  addInPlace(x, attention(spec, layer0, rmsNorm(x, d, layer0.inputNorm, spec.rmsNormEps)))
  layer0.postNorm.fill(mean(rowRms(x, d)))
  addInPlace(x, mlp(spec, layer0, rmsNorm(x, d, layer0.postNorm, spec.rmsNormEps)))
  for (const lw of layers.slice(1)) {
    addInPlace(x, attention(spec, lw, rmsNorm(x, d, lw.inputNorm, spec.rmsNormEps)))
    addInPlace(x, mlp(spec, lw, rmsNorm(x, d, lw.postNorm, spec.rmsNormEps)))
  }
  const finalRms = mean(rowRms(x, d))
  finalNorm.fill(finalRms)
  finalNorm.fill(finalRms / OUTPUT_SCALE, lay.oStart)

  const constValue = layer0.inputNorm[0]! / Math.sqrt(2 / d) // every embedding row has norm² 2
  return {
    spec,
    weights,
    info: { bigramNeurons: V, trigramNeurons: trigrams.length, prevTokenMinWeight: previousTokenMinWeight(spec, layer0, constValue) },
  }
}
