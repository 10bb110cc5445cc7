// ONNX graphs of one rank's segments: the pieces of the decoder between two all-reduces. They use
// the ops and conventions of ../onnx-graph.ts (opset 17, MatMul layout weights, the same mask, RoPE
// and grouped-query attention), so that summing the ranks' partials reproduces the whole model;
// test/model/shard.test.ts holds the two equal.

import onnxProto from 'onnx-proto';
import { endianness } from 'node:os';
import { GraphBuilder, OPSET, valueInfo } from '../onnx-graph.ts';
import { MASK_VALUE } from '../reference.ts';
import { ropeInvFreq, type LayerWeights, type LlamaSpec } from '../spec.ts';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const BOOL = onnx.TensorProto.DataType.BOOL;

/** Tensor names at the segment boundaries: what the runner feeds and reads. */
export const SEGMENT_IO = {
  inputIds: 'input_ids',
  hidden: 'hidden_states',
  attentionMask: 'attention_mask',
  positionIds: 'position_ids',
  pastKey: 'past_key',
  pastValue: 'past_value',
  presentKey: 'present_key',
  presentValue: 'present_value',
  partial: 'partial',
  logits: 'logits',
} as const;

const IO = SEGMENT_IO;

function finish(g: GraphBuilder, name: string, inputs: ReturnType<typeof valueInfo>[], outputs: ReturnType<typeof valueInfo>[], meta: Record<string, string>): Uint8Array {
  if (endianness() !== 'LE') throw new Error('raw ONNX tensors are little-endian; this host is big-endian');
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'spanserve',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
    graph: { name, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  });
  return onnx.ModelProto.encode(model).finish();
}

function rmsNorm(g: GraphBuilder, x: string, gain: string, eps: number): string {
  const epsName = g.floats(`${gain}.eps`, Float32Array.of(eps), []);
  const meanSq = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [meanSq, epsName])]);
  return g.op('Mul', [g.op('Div', [x, rms]), gain]);
}

/** input_ids [B,S] → hidden_states [B,S,d]; every rank holds the whole (small) embedding. */
export function buildEmbedSegment(spec: LlamaSpec, embed: Float32Array, meta: Record<string, string> = {}): Uint8Array {
  const g = new GraphBuilder();
  const table = g.floats('model.embed_tokens.weight', embed, [spec.vocabSize, spec.hiddenSize]);
  g.op('Gather', [table, IO.inputIds], { axis: 0 }, IO.hidden);
  return finish(g, 'embed', [valueInfo(IO.inputIds, INT64, ['batch_size', 'sequence_length'])], [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', spec.hiddenSize])], meta);
}

/**
 * Layer `layer`'s attention over the rank's heads: (hidden [B,S,d], attention_mask [B,T],
 * position_ids [B,S], past_key/value [B,kvHeads,P,hd]) → (partial [B,S,d]: o_proj of the rank's
 * heads only, present_key/value [B,kvHeads,T,hd]). `lw` is the rank's shard (see slice-weights.ts).
 */
export function buildAttentionSegment(spec: LlamaSpec, layer: number, lw: LayerWeights, heads: number, kvHeads: number, meta: Record<string, string> = {}): Uint8Array {
  const { hiddenSize: d, headDim: hd } = spec;
  const H = heads;
  const KV = kvHeads;
  const half = hd / 2;
  const group = H / KV;
  const g = new GraphBuilder();
  const p = `model.layers.${layer}`;

  const axis0 = g.ints('const_axes_0', [0]);
  const axis1 = g.ints('const_axes_1', [1]);
  const axis2 = g.ints('const_axes_2', [2]);
  const axes12 = g.ints('const_axes_1_2', [1, 2]);
  const zeroScalar = g.ints('const_zero', [0], []);
  const oneScalar = g.ints('const_one', [1], []);
  const oneIdx = g.ints('const_index_1', [1], []);
  const sliceAxis = g.ints('const_axis_3', [3]);
  const sliceStartLo = g.ints('const_rope_lo_start', [0]);
  const sliceEndLo = g.ints('const_rope_lo_end', [half]);
  const sliceEndHi = g.ints('const_rope_hi_end', [hd]);
  const attnScale = g.floats('const_attn_scale', Float32Array.of(1 / Math.sqrt(hd)), []);
  const maskZero = g.floats('const_mask_zero', Float32Array.of(0), []);
  const maskMin = g.floats('const_mask_min', Float32Array.of(MASK_VALUE), []);
  const invFreq = g.floats('rotary_inv_freq', Float32Array.from(ropeInvFreq(spec)), [half]);
  const shapeQ = g.ints('const_shape_q', [0, 0, H, hd]);
  const shapeKv = g.ints('const_shape_kv', [0, 0, KV, hd]);
  const shapeGroupedQ = g.ints('const_shape_grouped_q', [0, KV, -1, hd]);
  const shapeCtx = g.ints('const_shape_ctx', [0, H, -1, hd]);
  const shapeMerge = g.ints('const_shape_merge', [0, 0, H * hd]);
  const kvConst = g.ints('const_kv_heads', [KV]);
  const groupConst = g.ints('const_group', [group]);
  const minusOne = g.ints('const_minus_one', [-1]);

  // Dynamic sizes: batch B and chunk length S from the hidden states, total T from the mask.
  const hShape = g.op('Shape', [IO.hidden]);
  const maskShape = g.op('Shape', [IO.attentionMask]);
  const batch1d = g.op('Gather', [hShape, axis0], { axis: 0 });
  const seq1d = g.op('Gather', [hShape, axis1], { axis: 0 });
  const total1d = g.op('Gather', [maskShape, axis1], { axis: 0 });
  const seq = g.op('Gather', [hShape, oneIdx], { axis: 0 });
  const total = g.op('Gather', [maskShape, oneIdx], { axis: 0 });
  const scores5Shape = g.op('Concat', [batch1d, kvConst, groupConst, seq1d, total1d], { axis: 0 });
  const probs4Shape = g.op('Concat', [batch1d, kvConst, minusOne, total1d], { axis: 0 });

  // Additive mask [B,1,1,S,T]: query j (slot past+j) sees key slot n iff n <= past+j and mask[n]=1.
  const past = g.op('Sub', [total, seq]);
  const qSlots = g.op('Add', [g.op('Range', [zeroScalar, seq, oneScalar]), past]);
  const kSlots = g.op('Range', [zeroScalar, total, oneScalar]);
  const future = g.op('Greater', [kSlots, g.op('Unsqueeze', [qSlots, axis1])]);
  const padOk = g.op('Unsqueeze', [g.op('Cast', [IO.attentionMask], { to: BOOL }), axes12]);
  const allowed = g.op('And', [g.op('Not', [future]), padOk]);
  const mask5 = g.op('Unsqueeze', [g.op('Where', [allowed, maskZero, maskMin]), axis1]);

  const pos = g.op('Unsqueeze', [g.op('Cast', [IO.positionIds], { to: FLOAT }), axis2]);
  const freqs = g.op('Mul', [pos, invFreq]);
  const angles = g.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = g.op('Unsqueeze', [g.op('Cos', [angles]), axis1]);
  const sin = g.op('Unsqueeze', [g.op('Sin', [angles]), axis1]);
  const rope = (x: string): string => {
    const lo = g.op('Slice', [x, sliceStartLo, sliceEndLo, sliceAxis]);
    const hi = g.op('Slice', [x, sliceEndLo, sliceEndHi, sliceAxis]);
    const rotated = g.op('Concat', [g.op('Neg', [hi]), lo], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  };
  const split = (x: string, shape: string): string => g.op('Transpose', [g.op('Reshape', [x, shape])], { perm: [0, 2, 1, 3] });

  const h = rmsNorm(g, IO.hidden, g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]), spec.rmsNormEps);
  const q = rope(split(g.op('MatMul', [h, g.floats(`${p}.self_attn.q_proj.weight_t`, lw.q, [d, H * hd])]), shapeQ));
  const k = rope(split(g.op('MatMul', [h, g.floats(`${p}.self_attn.k_proj.weight_t`, lw.k, [d, KV * hd])]), shapeKv));
  const v = split(g.op('MatMul', [h, g.floats(`${p}.self_attn.v_proj.weight_t`, lw.v, [d, KV * hd])]), shapeKv);
  const presentK = g.op('Concat', [IO.pastKey, k], { axis: 2 }, IO.presentKey);
  const presentV = g.op('Concat', [IO.pastValue, v], { axis: 2 }, IO.presentValue);
  const qGrouped = g.op('Reshape', [g.op('Mul', [q, attnScale]), shapeGroupedQ]);
  const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [presentK], { perm: [0, 1, 3, 2] })]);
  const masked = g.op('Add', [g.op('Reshape', [scores, scores5Shape]), mask5]);
  const probs = g.op('Reshape', [g.op('Softmax', [masked], { axis: -1 }), probs4Shape]);
  const ctx = g.op('Reshape', [g.op('MatMul', [probs, presentV]), shapeCtx]);
  const merged = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), shapeMerge]);
  g.op('MatMul', [merged, g.floats(`${p}.self_attn.o_proj.weight_t`, lw.o, [H * hd, d])], {}, IO.partial);

  return finish(
    g,
    `attn_${layer}`,
    [
      valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', d]),
      valueInfo(IO.attentionMask, INT64, ['batch_size', 'total_sequence_length']),
      valueInfo(IO.positionIds, INT64, ['batch_size', 'sequence_length']),
      valueInfo(IO.pastKey, FLOAT, ['batch_size', KV, 'past_sequence_length', hd]),
      valueInfo(IO.pastValue, FLOAT, ['batch_size', KV, 'past_sequence_length', hd]),
    ],
    [
      valueInfo(IO.partial, FLOAT, ['batch_size', 'sequence_length', d]),
      valueInfo(IO.presentKey, FLOAT, ['batch_size', KV, 'total_sequence_length', hd]),
      valueInfo(IO.presentValue, FLOAT, ['batch_size', KV, 'total_sequence_length', hd]),
    ],
    meta,
  );
}

/** Layer `layer`'s SwiGLU over the rank's `units` hidden units: hidden [B,S,d] → partial [B,S,d]. */
export function buildMlpSegment(spec: LlamaSpec, layer: number, lw: LayerWeights, units: number, meta: Record<string, string> = {}): Uint8Array {
  const d = spec.hiddenSize;
  const g = new GraphBuilder();
  const p = `model.layers.${layer}`;
  const h = rmsNorm(g, IO.hidden, g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]), spec.rmsNormEps);
  const gate = g.op('MatMul', [h, g.floats(`${p}.mlp.gate_proj.weight_t`, lw.gate, [d, units])]);
  const up = g.op('MatMul', [h, g.floats(`${p}.mlp.up_proj.weight_t`, lw.up, [d, units])]);
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  g.op('MatMul', [act, g.floats(`${p}.mlp.down_proj.weight_t`, lw.down, [units, d])], {}, IO.partial);
  return finish(g, `mlp_${layer}`, [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', d])], [valueInfo(IO.partial, FLOAT, ['batch_size', 'sequence_length', d])], meta);
}

/** Final norm and LM head (rank 0 only): hidden [B,S,d] → logits [B,S,vocab]. */
export function buildHeadSegment(spec: LlamaSpec, finalNorm: Float32Array, lmHead: Float32Array, meta: Record<string, string> = {}): Uint8Array {
  const { hiddenSize: d, vocabSize: V } = spec;
  const g = new GraphBuilder();
  const hf = rmsNorm(g, IO.hidden, g.floats('model.norm.weight', finalNorm, [d]), spec.rmsNormEps);
  g.op('MatMul', [hf, g.floats('lm_head.weight_t', lmHead, [d, V])], {}, IO.logits);
  return finish(g, 'head', [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', d])], [valueInfo(IO.logits, FLOAT, ['batch_size', 'sequence_length', V])], meta);
}
