// Writes a Llama decoder for spanserve's own runner (src/worker/fused-runner.ts) with ONNX Runtime's
// fused operators, and a KV cache the graph only reads: the runner keeps each layer's cache in a
// resident buffer [B,KV,C,hd] (rows right-padded, `cache_lengths` saying how much of each row is
// real) and the graph returns the new tokens' K/V only. The Optimum layout (onnx-graph.ts) returns
// past+new as `present`, which onnxruntime-node copies out in full every step.
//
// Attention scores the cached keys and the new keys apart and softmaxes them together, so the cache
// is never concatenated with the new keys (a copy of the whole cache per layer per step).

import onnxProto from 'onnx-proto'
import { endianness } from 'node:os'
import { GraphBuilder, OPSET, valueInfo } from './graph-builder.ts'
import { MASK_VALUE } from './reference.ts'
import { ropeInvFreq, validateSpec, type LlamaSpec, type LlamaWeights } from './spec.ts'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
const MS = 'com.microsoft'

type ModelProto = InstanceType<typeof onnx.ModelProto>
type Attr = number | number[] | { float: number }

/** Input and output names of the fused graph, shared with the runner. */
export const FUSED_IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  cacheLengths: 'cache_lengths',
  cacheKey: (layer: number) => `cache.${layer}.key`,
  cacheValue: (layer: number) => `cache.${layer}.value`,
  logits: 'logits',
  newKey: (layer: number) => `new_key.${layer}`,
  newValue: (layer: number) => `new_value.${layer}`,
} as const

/** GraphBuilder plus nodes of other domains and with several outputs (the fused norms). */
class FusedBuilder extends GraphBuilder {
  private n = 0

  node(type: string, inputs: string[], attrs: Record<string, Attr>, outputs: number | string[], domain = ''): string[] {
    const names = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, i) => `/fused/${type}_${this.n}_${i}`) : outputs
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (Array.isArray(v)) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
      if (typeof v === 'object') return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v.float }
      return { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
    })
    this.nodes.push(onnx.NodeProto.create({ opType: type, domain, name: `fused_${type}_${this.n++}`, input: inputs, output: names, attribute }))
    return names
  }

  ms(type: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    return this.node(type, inputs, attrs, output ? [output] : 1, MS)[0]!
  }
}

/** Concatenate row-major [rows, a] and [rows, b] into [rows, a+b]: two MatMuls' weights become one. */
function concatColumns(rows: number, parts: readonly Float32Array[]): Float32Array {
  const widths = parts.map((p) => p.length / rows)
  const total = widths.reduce((s, w) => s + w, 0)
  const out = new Float32Array(rows * total)
  for (let r = 0; r < rows; r++) {
    let at = r * total
    parts.forEach((p, i) => {
      out.set(p.subarray(r * widths[i]!, (r + 1) * widths[i]!), at)
      at += widths[i]!
    })
  }
  return out
}

/**
 * Rotary tables [maxPositions, hd/2] for RotaryEmbedding, computed as the Optimum graph computes them
 * (float32 angle, then cos/sin), so that both graphs give the same logits.
 */
function rotaryCaches(spec: LlamaSpec): { cos: Float32Array; sin: Float32Array } {
  const half = spec.headDim / 2
  const inv = ropeInvFreq(spec).map(Math.fround)
  const cos = new Float32Array(spec.maxPositions * half)
  const sin = new Float32Array(spec.maxPositions * half)
  for (let p = 0; p < spec.maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]!)
      cos[p * half + i] = Math.cos(angle)
      sin[p * half + i] = Math.sin(angle)
    }
  }
  return { cos, sin }
}

/** The fused decoder as a ModelProto (its MatMuls may still be rewritten, e.g. quantized, before serialising). */
export function buildFusedLlamaOnnx(spec: LlamaSpec, weights: LlamaWeights): ModelProto {
  validateSpec(spec)
  if (endianness() !== 'LE') throw new Error('raw ONNX tensors are little-endian; this host is big-endian')
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec
  const group = H / KV
  const g = new FusedBuilder()
  const eps = { float: spec.rmsNormEps }

  const inputs = [
    valueInfo(FUSED_IO.inputIds, INT64, ['batch_size', 'sequence_length']),
    valueInfo(FUSED_IO.positionIds, INT64, ['batch_size', 'sequence_length']),
    valueInfo(FUSED_IO.cacheLengths, INT64, ['batch_size']),
  ]
  const outputs = [valueInfo(FUSED_IO.logits, FLOAT, ['batch_size', 'sequence_length', V])]

  const rope = rotaryCaches(spec)
  const cosCache = g.floats('rotary_cos_cache', rope.cos, [spec.maxPositions, hd / 2])
  const sinCache = g.floats('rotary_sin_cache', rope.sin, [spec.maxPositions, hd / 2])
  const shapeQ = g.ints('const_shape_q', [0, 0, H, hd])
  const shapeKv = g.ints('const_shape_kv', [0, 0, KV, hd])
  const shapeGroupedQ = g.ints('const_shape_grouped_q', [0, KV, -1, hd])
  const shapeCtx = g.ints('const_shape_ctx', [0, H, -1, hd])
  const shapeMerge = g.ints('const_shape_merge', [0, 0, H * hd])
  const qkvSplit = g.ints('const_split_qkv', [H * hd, KV * hd, KV * hd])
  const mlpSplit = g.ints('const_split_mlp', [m, m])
  const zero = g.ints('const_zero', [0], [])
  const one = g.ints('const_one', [1], [])
  const oneIdx = g.ints('const_index_1', [1], [])
  const twoIdx = g.ints('const_index_2', [2], [])
  const axis1 = g.ints('const_axes_1', [1])
  const axes12 = g.ints('const_axes_1_2', [1, 2])
  const groupReps = g.ints('const_group', [group])
  const maskZero = g.floats('const_mask_zero', Float32Array.of(0), [])
  const maskMin = g.floats('const_mask_min', Float32Array.of(MASK_VALUE), [])

  // Dynamic sizes: chunk length S (new tokens per row) and cache capacity C.
  const idsShape = g.op('Shape', [FUSED_IO.inputIds])
  const cacheShape = g.op('Shape', [FUSED_IO.cacheKey(0)])
  const seq = g.op('Gather', [idsShape, oneIdx], { axis: 0 })
  const capacity = g.op('Gather', [cacheShape, twoIdx], { axis: 0 })
  const probSplit = g.op('Concat', [g.op('Shape', [FUSED_IO.cacheKey(0)], { start: 2, end: 3 }), g.op('Shape', [FUSED_IO.inputIds], { start: 1, end: 2 })], { axis: 0 })

  // Cache mask [B,1,1,C]: slot c of row b is real iff c < cache_lengths[b].
  const slots = g.op('Range', [zero, capacity, one])
  const cached = g.op('Less', [slots, g.op('Unsqueeze', [FUSED_IO.cacheLengths, axis1])]) // [B,C]
  const cacheMask = g.op('Unsqueeze', [g.op('Where', [cached, maskZero, maskMin]), axes12])
  // Causal mask over the chunk [group*S, S]: query rows are (group, S) ordered, query j sees new keys <= j.
  const chunk = g.op('Range', [zero, seq, one])
  const queryPos = g.op('Unsqueeze', [g.op('Tile', [chunk, groupReps]), axis1]) // [group*S,1]
  const chunkMask = g.op('Where', [g.op('Greater', [chunk, queryPos]), maskMin, maskZero])

  const scale = { float: 1 / Math.sqrt(hd) }
  let residual = g.op('Gather', [g.floats('model.embed_tokens.weight', weights.embed, [V, d]), FUSED_IO.inputIds], { axis: 0 })
  let pending: string | null = null // the last block's output, not yet added to the residual stream
  /** RMSNorm of the residual stream, with the pending block output added into it first. */
  const norm = (gain: string): string => {
    if (pending === null) return g.node('SimplifiedLayerNormalization', [residual, gain], { axis: -1, epsilon: eps }, 1)[0]!
    const [normed, , , sum] = g.node('SkipSimplifiedLayerNormalization', [pending, residual, gain], { epsilon: eps }, 4, MS)
    residual = sum!
    return normed!
  }

  weights.layers.forEach((lw, i) => {
    const p = `model.layers.${i}`
    const cacheK = FUSED_IO.cacheKey(i)
    const cacheV = FUSED_IO.cacheValue(i)
    inputs.push(valueInfo(cacheK, FLOAT, ['batch_size', KV, 'capacity', hd]), valueInfo(cacheV, FLOAT, ['batch_size', KV, 'capacity', hd]))
    outputs.push(valueInfo(FUSED_IO.newKey(i), FLOAT, ['batch_size', KV, 'sequence_length', hd]), valueInfo(FUSED_IO.newValue(i), FLOAT, ['batch_size', KV, 'sequence_length', hd]))

    const h = norm(g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]))
    let qkv = g.op('MatMul', [h, g.floats(`${p}.self_attn.qkv_proj.weight_t`, concatColumns(d, [lw.q, lw.k, lw.v]), [d, (H + 2 * KV) * hd])])
    if (lw.qBias || lw.kBias || lw.vBias) {
      // One Add for the three biases (a missing one is zeros), as the projections are one MatMul.
      const bias = concatColumns(1, [lw.qBias ?? new Float32Array(H * hd), lw.kBias ?? new Float32Array(KV * hd), lw.vBias ?? new Float32Array(KV * hd)])
      qkv = g.op('Add', [qkv, g.floats(`${p}.self_attn.qkv_proj.bias`, bias, [(H + 2 * KV) * hd])])
    }
    const [qFlat, kFlat, vFlat] = g.node('Split', [qkv, qkvSplit], { axis: -1 }, 3)
    const qRot = g.ms('RotaryEmbedding', [qFlat!, FUSED_IO.positionIds, cosCache, sinCache], { interleaved: 0, num_heads: H })
    const kRot = g.ms('RotaryEmbedding', [kFlat!, FUSED_IO.positionIds, cosCache, sinCache], { interleaved: 0, num_heads: KV })
    const q = g.op('Transpose', [g.op('Reshape', [qRot, shapeQ])], { perm: [0, 2, 1, 3] }) // [B,H,S,hd]
    const newK = g.op('Transpose', [g.op('Reshape', [kRot, shapeKv])], { perm: [0, 2, 1, 3] }, FUSED_IO.newKey(i))
    const newV = g.op('Transpose', [g.op('Reshape', [vFlat!, shapeKv])], { perm: [0, 2, 1, 3] }, FUSED_IO.newValue(i))
    // Grouped-query attention without repeating K/V: each KV head's query group folded into its rows.
    const qGrouped = g.op('Reshape', [q, shapeGroupedQ]) // [B,KV,group*S,hd]
    const scoresCache = g.op('Add', [g.ms('FusedMatMul', [qGrouped, cacheK], { alpha: scale, transB: 1 }), cacheMask]) // [B,KV,gS,C]
    const scoresNew = g.op('Add', [g.ms('FusedMatMul', [qGrouped, newK], { alpha: scale, transB: 1 }), chunkMask]) // [B,KV,gS,S]
    const probs = g.op('Softmax', [g.op('Concat', [scoresCache, scoresNew], { axis: -1 })], { axis: -1 })
    const [probsCache, probsNew] = g.node('Split', [probs, probSplit], { axis: -1 }, 2)
    const ctx = g.op('Add', [g.op('MatMul', [probsCache!, cacheV]), g.op('MatMul', [probsNew!, newV])]) // [B,KV,gS,hd]
    const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [ctx, shapeCtx])], { perm: [0, 2, 1, 3] }), shapeMerge])
    pending = g.op('MatMul', [merged, g.floats(`${p}.self_attn.o_proj.weight_t`, lw.o, [H * hd, d])])

    const h2 = norm(g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]))
    const gateUp = g.op('MatMul', [h2, g.floats(`${p}.mlp.gate_up_proj.weight_t`, concatColumns(d, [lw.gate, lw.up]), [d, 2 * m])])
    const [gate, up] = g.node('Split', [gateUp, mlpSplit], { axis: -1 }, 2)
    const act = g.op('Mul', [g.op('Mul', [gate!, g.op('Sigmoid', [gate!])]), up!])
    pending = g.op('MatMul', [act, g.floats(`${p}.mlp.down_proj.weight_t`, lw.down, [m, d])])
  })

  const hf = norm(g.floats('model.norm.weight', weights.finalNorm, [d]))
  g.op('MatMul', [hf, g.floats('lm_head.weight_t', weights.lmHead, [d, V])], {}, FUSED_IO.logits)

  return onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'spanserve',
    producerVersion: '1',
    opsetImport: [
      { domain: '', version: OPSET },
      { domain: MS, version: 1 },
    ],
    graph: { name: 'llama_decoder_fused', node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  })
}

/** The model's bytes, for InferenceSession.create. */
export function serializeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish()
}
