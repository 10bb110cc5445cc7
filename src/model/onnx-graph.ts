// Writes a Llama decoder as an ONNX ModelProto in Optimum's "decoder with past" layout, using only
// standard ops that ONNX Runtime's CPU and CUDA providers (and onnxruntime-web) run at opset 17.

import onnxProto from 'onnx-proto';
import { endianness } from 'node:os';
import { MASK_VALUE } from './reference.ts';
import { ropeInvFreq, validateSpec, type LlamaSpec, type LlamaWeights } from './spec.ts';

const { onnx } = onnxProto;
type AttrValue = number | number[] | { float: number };

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const BOOL = onnx.TensorProto.DataType.BOOL;
export const OPSET = 17;

/** Collects nodes and initializers; every helper returns its output's name. */
export class GraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private counter = 0;

  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    const out = output ?? `/${type}_${this.counter}`;
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (Array.isArray(v)) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v };
      if (typeof v === 'object') return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v.float };
      return { name, type: onnx.AttributeProto.AttributeType.INT, i: v };
    });
    this.nodes.push(onnx.NodeProto.create({ opType: type, name: `${type}_${this.counter++}`, input: inputs, output: [out], attribute }));
    return out;
  }

  floats(name: string, data: Float32Array, dims: number[]): string {
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: raw }));
    return name;
  }

  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    const raw = new Uint8Array(data.buffer);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: INT64, rawData: raw }));
    return name;
  }
}

export function valueInfo(name: string, elemType: number, dims: (string | number)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

/** Serialised ONNX model (weights inline as raw little-endian float32). */
export function buildLlamaOnnx(spec: LlamaSpec, weights: LlamaWeights): Uint8Array {
  validateSpec(spec);
  if (endianness() !== 'LE') throw new Error('raw ONNX tensors are little-endian; this host is big-endian');
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec;
  const half = hd / 2;
  const group = H / KV;
  const g = new GraphBuilder();

  // Shared constants.
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
  const eps = g.floats('const_rms_eps', Float32Array.of(spec.rmsNormEps), []);
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

  // Dynamic sizes: batch B, chunk length S, total length T (= past + S, the attention_mask's width).
  const idsShape = g.op('Shape', ['input_ids']);
  const maskShape = g.op('Shape', ['attention_mask']);
  const batch1d = g.op('Gather', [idsShape, axis0], { axis: 0 });
  const seq1d = g.op('Gather', [idsShape, axis1], { axis: 0 });
  const total1d = g.op('Gather', [maskShape, axis1], { axis: 0 });
  const seq = g.op('Gather', [idsShape, oneIdx], { axis: 0 });
  const total = g.op('Gather', [maskShape, oneIdx], { axis: 0 });
  const scores5Shape = g.op('Concat', [batch1d, kvConst, groupConst, seq1d, total1d], { axis: 0 });
  const probs4Shape = g.op('Concat', [batch1d, kvConst, minusOne, total1d], { axis: 0 });

  // Additive mask [B,1,1,S,T]: query j (absolute slot past+j) sees key slot n iff n <= past+j and mask[n]=1.
  const past = g.op('Sub', [total, seq]);
  const qSlots = g.op('Add', [g.op('Range', [zeroScalar, seq, oneScalar]), past]);
  const kSlots = g.op('Range', [zeroScalar, total, oneScalar]);
  const future = g.op('Greater', [kSlots, g.op('Unsqueeze', [qSlots, axis1])]); // [S,T]
  const padOk = g.op('Unsqueeze', [g.op('Cast', ['attention_mask'], { to: BOOL }), axes12]); // [B,1,1,T]
  const allowed = g.op('And', [g.op('Not', [future]), padOk]); // [B,1,S,T]
  const mask5 = g.op('Unsqueeze', [g.op('Where', [allowed, maskZero, maskMin]), axis1]); // [B,1,1,S,T]

  // Rotary tables [B,1,S,hd] from position_ids.
  const pos = g.op('Unsqueeze', [g.op('Cast', ['position_ids'], { to: FLOAT }), axis2]); // [B,S,1]
  const freqs = g.op('Mul', [pos, invFreq]); // [B,S,half]
  const angles = g.op('Concat', [freqs, freqs], { axis: -1 });
  const cos = g.op('Unsqueeze', [g.op('Cos', [angles]), axis1]);
  const sin = g.op('Unsqueeze', [g.op('Sin', [angles]), axis1]);

  const rmsNorm = (x: string, gain: string): string => {
    const meanSq = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const rms = g.op('Sqrt', [g.op('Add', [meanSq, eps])]);
    return g.op('Mul', [g.op('Div', [x, rms]), gain]);
  };
  const rope = (x: string): string => {
    const lo = g.op('Slice', [x, sliceStartLo, sliceEndLo, sliceAxis]);
    const hi = g.op('Slice', [x, sliceEndLo, sliceEndHi, sliceAxis]);
    const rotated = g.op('Concat', [g.op('Neg', [hi]), lo], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  };
  const heads = (x: string, shape: string): string => g.op('Transpose', [g.op('Reshape', [x, shape])], { perm: [0, 2, 1, 3] });

  let x = g.op('Gather', [g.floats('model.embed_tokens.weight', weights.embed, [V, d]), 'input_ids'], { axis: 0 });
  const inputs = [
    valueInfo('input_ids', INT64, ['batch_size', 'sequence_length']),
    valueInfo('attention_mask', INT64, ['batch_size', 'total_sequence_length']),
    valueInfo('position_ids', INT64, ['batch_size', 'sequence_length']),
  ];
  const outputs = [valueInfo('logits', FLOAT, ['batch_size', 'sequence_length', V])];
  const presentOutputs: ReturnType<typeof valueInfo>[] = [];

  weights.layers.forEach((lw, i) => {
    const p = `model.layers.${i}`;
    for (const kind of ['key', 'value']) {
      inputs.push(valueInfo(`past_key_values.${i}.${kind}`, FLOAT, ['batch_size', KV, 'past_sequence_length', hd]));
      presentOutputs.push(valueInfo(`present.${i}.${kind}`, FLOAT, ['batch_size', KV, 'total_sequence_length', hd]));
    }
    const h = rmsNorm(x, g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]));
    const q = rope(heads(g.op('MatMul', [h, g.floats(`${p}.self_attn.q_proj.weight_t`, lw.q, [d, H * hd])]), shapeQ));
    const k = rope(heads(g.op('MatMul', [h, g.floats(`${p}.self_attn.k_proj.weight_t`, lw.k, [d, KV * hd])]), shapeKv));
    const v = heads(g.op('MatMul', [h, g.floats(`${p}.self_attn.v_proj.weight_t`, lw.v, [d, KV * hd])]), shapeKv);
    const presentK = g.op('Concat', [`past_key_values.${i}.key`, k], { axis: 2 }, `present.${i}.key`);
    const presentV = g.op('Concat', [`past_key_values.${i}.value`, v], { axis: 2 }, `present.${i}.value`);
    // Grouped-query attention without copying K/V: fold each KV head's query group into its rows.
    const qGrouped = g.op('Reshape', [g.op('Mul', [q, attnScale]), shapeGroupedQ]); // [B,KV,group*S,hd]
    const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [presentK], { perm: [0, 1, 3, 2] })]); // [B,KV,group*S,T]
    const masked = g.op('Add', [g.op('Reshape', [scores, scores5Shape]), mask5]); // [B,KV,group,S,T]
    const probs = g.op('Reshape', [g.op('Softmax', [masked], { axis: -1 }), probs4Shape]);
    const ctx = g.op('Reshape', [g.op('MatMul', [probs, presentV]), shapeCtx]); // [B,H,S,hd]
    const merged = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), shapeMerge]);
    x = g.op('Add', [x, g.op('MatMul', [merged, g.floats(`${p}.self_attn.o_proj.weight_t`, lw.o, [H * hd, d])])]);

    const h2 = rmsNorm(x, g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]));
    const gate = g.op('MatMul', [h2, g.floats(`${p}.mlp.gate_proj.weight_t`, lw.gate, [d, m])]);
    const up = g.op('MatMul', [h2, g.floats(`${p}.mlp.up_proj.weight_t`, lw.up, [d, m])]);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, g.op('MatMul', [act, g.floats(`${p}.mlp.down_proj.weight_t`, lw.down, [m, d])])]);
  });

  const hf = rmsNorm(x, g.floats('model.norm.weight', weights.finalNorm, [d]));
  g.op('MatMul', [hf, g.floats('lm_head.weight_t', weights.lmHead, [d, V])], {}, 'logits');

  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'spanserve',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: 'llama_decoder_with_past',
      node: g.nodes,
      initializer: g.initializers,
      input: inputs,
      output: [...outputs, ...presentOutputs],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
