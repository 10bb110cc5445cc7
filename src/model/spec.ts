// The shape of a Llama decoder and its weights, shared by the builder, the ONNX writer and the reference.

export interface LlamaSpec {
  readonly hiddenSize: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly headDim: number
  readonly intermediateSize: number
  readonly vocabSize: number
  readonly maxPositions: number
  readonly ropeTheta: number
  readonly rmsNormEps: number
}

/** Matrices are row-major in MatMul layout [in, out], so y = x · W with no transpose. */
export interface LayerWeights {
  readonly inputNorm: Float32Array // [d]
  readonly q: Float32Array // [d, heads*headDim]
  readonly k: Float32Array // [d, kvHeads*headDim]
  readonly v: Float32Array // [d, kvHeads*headDim]
  readonly o: Float32Array // [heads*headDim, d]
  readonly postNorm: Float32Array // [d]
  readonly gate: Float32Array // [d, intermediate]
  readonly up: Float32Array // [d, intermediate]
  readonly down: Float32Array // [intermediate, d]
  /** Projection biases (Qwen2; Llama with attention_bias), absent where the model has none. */
  readonly qBias?: Float32Array // [heads*headDim]
  readonly kBias?: Float32Array // [kvHeads*headDim]
  readonly vBias?: Float32Array // [kvHeads*headDim]
}

export interface LlamaWeights {
  readonly embed: Float32Array // [vocab, d]
  readonly layers: readonly LayerWeights[]
  readonly finalNorm: Float32Array // [d]
  readonly lmHead: Float32Array // [d, vocab]
}

export function countParams(spec: LlamaSpec): number {
  const { hiddenSize: d, numHeads: h, numKvHeads: kv, headDim: hd, intermediateSize: m, vocabSize: v } = spec
  const perLayer = 2 * d + d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * m
  return 2 * v * d + d + spec.numLayers * perLayer
}

/** Llama's rotary frequencies: theta^(-2i/headDim) for each of the headDim/2 rotated pairs. */
export function ropeInvFreq(spec: Pick<LlamaSpec, 'headDim' | 'ropeTheta'>): Float64Array {
  const half = spec.headDim / 2
  const f = new Float64Array(half)
  for (let i = 0; i < half; i++) f[i] = spec.ropeTheta ** ((-2 * i) / spec.headDim)
  return f
}

export function validateSpec(spec: LlamaSpec): void {
  if (spec.numHeads % spec.numKvHeads !== 0) {
    throw new Error(`numHeads ${spec.numHeads} is not a multiple of numKvHeads ${spec.numKvHeads}`)
  }
  if (spec.headDim % 2 !== 0) throw new Error(`headDim ${spec.headDim} must be even for RoPE`)
}
