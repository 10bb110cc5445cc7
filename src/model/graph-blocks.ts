// The pieces of a Llama decoder layer as ONNX ops: the causal mask, RoPE, grouped-query attention,
// RMSNorm and SwiGLU. The whole model (onnx-graph.ts) builds them over all heads and a
// tensor-parallel segment (tp/segment-graph.ts) over one rank's heads; one definition for both is
// what makes the ranks' partials sum to the whole model's activations (test/model/shard.test.ts).

import onnxProto from 'onnx-proto'
import type { GraphBuilder } from './graph-builder.ts'
import { MASK_VALUE } from './reference.ts'
import { ropeInvFreq, type LayerWeights, type LlamaSpec } from './spec.ts'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const BOOL = onnx.TensorProto.DataType.BOOL

export interface AttentionShape {
  /** Query heads in this graph: all of them, or one rank's share. */
  readonly heads: number
  /** KV heads in this graph; heads / kvHeads is the model's query group size either way. */
  readonly kvHeads: number
  /**
   * Also make one `const_rms_eps` tensor for every RMSNorm of the graph to share. The whole model
   * does; a segment holds one norm at most and makes its eps tensor beside it (tp/segment-graph.ts).
   */
  readonly sharedRmsEps?: boolean
}

/** Graph inputs the attention reads besides the hidden states. */
export interface AttentionInputs {
  /** Any [B,S,…] input: batch B and chunk length S are read from its shape. */
  readonly sizeSource: string
  /** [B,T] int64, T = past + S: 1 where a key slot may be attended. */
  readonly attentionMask: string
  /** [B,S] int64: the absolute position of each query. */
  readonly positionIds: string
}

/** Tensors every layer's attention reads, made once per graph by prepareAttention. */
export interface Attention {
  readonly hiddenSize: number
  readonly headDim: number
  readonly heads: number
  readonly kvHeads: number
  /** The shared RMSNorm eps tensor when `sharedRmsEps` was asked for, else null. */
  readonly rmsEps: string | null
  readonly attnScale: string
  readonly sliceAxis: string
  readonly sliceStartLo: string
  readonly sliceEndLo: string
  readonly sliceEndHi: string
  readonly shapeQ: string
  readonly shapeKv: string
  readonly shapeGroupedQ: string
  readonly shapeCtx: string
  readonly shapeMerge: string
  /** Runtime shapes [B,KV,group,S,T] and [B,KV,group*S,T] of the scores and probabilities. */
  readonly scores5Shape: string
  readonly probs4Shape: string
  /** Additive mask [B,1,1,S,T]: 0 where a query may see a key, MASK_VALUE elsewhere. */
  readonly mask5: string
  /** Rotary tables [B,1,S,hd]. */
  readonly cos: string
  readonly sin: string
}

/** Past and present K/V tensor names of one layer's attention. */
export interface KvCacheNames {
  readonly pastKey: string
  readonly pastValue: string
  readonly presentKey: string
  readonly presentValue: string
}

/**
 * The constants, the causal mask and the rotary tables that every layer's attention shares, for
 * `shape.heads` query heads over `shape.kvHeads` KV heads. Node and initializer names follow the
 * order of the calls, so the graph's bytes depend on this order: keep it.
 */
export function prepareAttention(g: GraphBuilder, spec: LlamaSpec, shape: AttentionShape, inputs: AttentionInputs): Attention {
  const { hiddenSize, headDim: hd } = spec
  const { heads: H, kvHeads: KV } = shape
  const half = hd / 2

  const axis0 = g.ints('const_axes_0', [0])
  const axis1 = g.ints('const_axes_1', [1])
  const axis2 = g.ints('const_axes_2', [2])
  const axes12 = g.ints('const_axes_1_2', [1, 2])
  const zeroScalar = g.ints('const_zero', [0], [])
  const oneScalar = g.ints('const_one', [1], [])
  const oneIdx = g.ints('const_index_1', [1], [])
  const sliceAxis = g.ints('const_axis_3', [3])
  const sliceStartLo = g.ints('const_rope_lo_start', [0])
  const sliceEndLo = g.ints('const_rope_lo_end', [half])
  const sliceEndHi = g.ints('const_rope_hi_end', [hd])
  const rmsEps = shape.sharedRmsEps ? g.floats('const_rms_eps', Float32Array.of(spec.rmsNormEps), []) : null
  const attnScale = g.floats('const_attn_scale', Float32Array.of(1 / Math.sqrt(hd)), [])
  const maskZero = g.floats('const_mask_zero', Float32Array.of(0), [])
  const maskMin = g.floats('const_mask_min', Float32Array.of(MASK_VALUE), [])
  const invFreq = g.floats('rotary_inv_freq', Float32Array.from(ropeInvFreq(spec)), [half])
  const shapeQ = g.ints('const_shape_q', [0, 0, H, hd])
  const shapeKv = g.ints('const_shape_kv', [0, 0, KV, hd])
  const shapeGroupedQ = g.ints('const_shape_grouped_q', [0, KV, -1, hd])
  const shapeCtx = g.ints('const_shape_ctx', [0, H, -1, hd])
  const shapeMerge = g.ints('const_shape_merge', [0, 0, H * hd])
  const kvConst = g.ints('const_kv_heads', [KV])
  const groupConst = g.ints('const_group', [H / KV])
  const minusOne = g.ints('const_minus_one', [-1])

  // Dynamic sizes: batch B, chunk length S, total length T (= past + S, the attention_mask's width).
  const sizeShape = g.op('Shape', [inputs.sizeSource])
  const maskShape = g.op('Shape', [inputs.attentionMask])
  const batch1d = g.op('Gather', [sizeShape, axis0], { axis: 0 })
  const seq1d = g.op('Gather', [sizeShape, axis1], { axis: 0 })
  const total1d = g.op('Gather', [maskShape, axis1], { axis: 0 })
  const seq = g.op('Gather', [sizeShape, oneIdx], { axis: 0 })
  const total = g.op('Gather', [maskShape, oneIdx], { axis: 0 })
  const scores5Shape = g.op('Concat', [batch1d, kvConst, groupConst, seq1d, total1d], { axis: 0 })
  const probs4Shape = g.op('Concat', [batch1d, kvConst, minusOne, total1d], { axis: 0 })

  // Additive mask [B,1,1,S,T]: query j (absolute slot past+j) sees key slot n iff n <= past+j and mask[n]=1.
  const past = g.op('Sub', [total, seq])
  const qSlots = g.op('Add', [g.op('Range', [zeroScalar, seq, oneScalar]), past])
  const kSlots = g.op('Range', [zeroScalar, total, oneScalar])
  const future = g.op('Greater', [kSlots, g.op('Unsqueeze', [qSlots, axis1])]) // [S,T]
  const padOk = g.op('Unsqueeze', [g.op('Cast', [inputs.attentionMask], { to: BOOL }), axes12]) // [B,1,1,T]
  const allowed = g.op('And', [g.op('Not', [future]), padOk]) // [B,1,S,T]
  const mask5 = g.op('Unsqueeze', [g.op('Where', [allowed, maskZero, maskMin]), axis1]) // [B,1,1,S,T]

  // Rotary tables [B,1,S,hd] from position_ids.
  const pos = g.op('Unsqueeze', [g.op('Cast', [inputs.positionIds], { to: FLOAT }), axis2]) // [B,S,1]
  const freqs = g.op('Mul', [pos, invFreq]) // [B,S,half]
  const angles = g.op('Concat', [freqs, freqs], { axis: -1 })
  const cos = g.op('Unsqueeze', [g.op('Cos', [angles]), axis1])
  const sin = g.op('Unsqueeze', [g.op('Sin', [angles]), axis1])

  return {
    hiddenSize,
    headDim: hd,
    heads: H,
    kvHeads: KV,
    rmsEps,
    attnScale,
    sliceAxis,
    sliceStartLo,
    sliceEndLo,
    sliceEndHi,
    shapeQ,
    shapeKv,
    shapeGroupedQ,
    shapeCtx,
    shapeMerge,
    scores5Shape,
    probs4Shape,
    mask5,
    cos,
    sin,
  }
}

/** x / sqrt(mean(x²) + eps) * gain over the last axis; `eps` names a scalar float tensor. */
export function rmsNorm(g: GraphBuilder, x: string, gain: string, eps: string): string {
  const meanSq = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 })
  const rms = g.op('Sqrt', [g.op('Add', [meanSq, eps])])
  return g.op('Mul', [g.op('Div', [x, rms]), gain])
}

/** Rotates heads [B,heads,S,hd] by their positions: x*cos + rotate_half(x)*sin, as in HF Llama. */
function rotary(g: GraphBuilder, a: Attention, x: string): string {
  const lo = g.op('Slice', [x, a.sliceStartLo, a.sliceEndLo, a.sliceAxis])
  const hi = g.op('Slice', [x, a.sliceEndLo, a.sliceEndHi, a.sliceAxis])
  const rotated = g.op('Concat', [g.op('Neg', [hi]), lo], { axis: -1 })
  return g.op('Add', [g.op('Mul', [x, a.cos]), g.op('Mul', [rotated, a.sin])])
}

/** [B,S,heads*hd] → [B,heads,S,hd], `shape` being [0,0,heads,hd]. */
function splitHeads(g: GraphBuilder, x: string, shape: string): string {
  return g.op('Transpose', [g.op('Reshape', [x, shape])], { perm: [0, 2, 1, 3] })
}

/**
 * One layer's self-attention over the graph's heads, from the normed hidden states `h` [B,S,d] to
 * the o_proj output [B,S,d] (before the residual; in a segment, the rank's partial sum). `lw` holds
 * the weights of those heads, named under `prefix`; `output` names the result when given.
 */
export function attention(g: GraphBuilder, a: Attention, h: string, lw: LayerWeights, prefix: string, kv: KvCacheNames, output?: string): string {
  const { hiddenSize: d, headDim: hd, heads: H, kvHeads: KV } = a
  const q = rotary(g, a, splitHeads(g, g.op('MatMul', [h, g.floats(`${prefix}.self_attn.q_proj.weight_t`, lw.q, [d, H * hd])]), a.shapeQ))
  const k = rotary(g, a, splitHeads(g, g.op('MatMul', [h, g.floats(`${prefix}.self_attn.k_proj.weight_t`, lw.k, [d, KV * hd])]), a.shapeKv))
  const v = splitHeads(g, g.op('MatMul', [h, g.floats(`${prefix}.self_attn.v_proj.weight_t`, lw.v, [d, KV * hd])]), a.shapeKv)
  const presentK = g.op('Concat', [kv.pastKey, k], { axis: 2 }, kv.presentKey)
  const presentV = g.op('Concat', [kv.pastValue, v], { axis: 2 }, kv.presentValue)
  // Grouped-query attention without copying K/V: fold each KV head's query group into its rows.
  const qGrouped = g.op('Reshape', [g.op('Mul', [q, a.attnScale]), a.shapeGroupedQ]) // [B,KV,group*S,hd]
  const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [presentK], { perm: [0, 1, 3, 2] })]) // [B,KV,group*S,T]
  const masked = g.op('Add', [g.op('Reshape', [scores, a.scores5Shape]), a.mask5]) // [B,KV,group,S,T]
  const probs = g.op('Reshape', [g.op('Softmax', [masked], { axis: -1 }), a.probs4Shape])
  const ctx = g.op('Reshape', [g.op('MatMul', [probs, presentV]), a.shapeCtx]) // [B,H,S,hd]
  const merged = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), a.shapeMerge])
  return g.op('MatMul', [merged, g.floats(`${prefix}.self_attn.o_proj.weight_t`, lw.o, [H * hd, d])], {}, output)
}

/**
 * One layer's SwiGLU MLP over `units` hidden units (all, or one rank's share), from the normed
 * hidden states `h` [B,S,d] to the down_proj output [B,S,d] (before the residual); `output` names
 * the result when given.
 */
export function swiglu(g: GraphBuilder, h: string, lw: LayerWeights, prefix: string, hiddenSize: number, units: number, output?: string): string {
  const d = hiddenSize
  const gate = g.op('MatMul', [h, g.floats(`${prefix}.mlp.gate_proj.weight_t`, lw.gate, [d, units])])
  const up = g.op('MatMul', [h, g.floats(`${prefix}.mlp.up_proj.weight_t`, lw.up, [d, units])])
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up])
  return g.op('MatMul', [act, g.floats(`${prefix}.mlp.down_proj.weight_t`, lw.down, [units, d])], {}, output)
}
