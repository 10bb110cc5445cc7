// Writes a Llama decoder as an ONNX ModelProto in Optimum's "decoder with past" layout, using only
// standard ops that ONNX Runtime's CPU and CUDA providers (and onnxruntime-web) run at opset 17.

import onnxProto from 'onnx-proto';
import { endianness } from 'node:os';
import { attention, prepareAttention, rmsNorm, swiglu } from './graph-blocks.ts';
import { validateSpec, type LlamaSpec, type LlamaWeights } from './spec.ts';

const { onnx } = onnxProto;
type AttrValue = number | number[] | { float: number };

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
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
  const g = new GraphBuilder();
  const attn = prepareAttention(g, spec, { heads: H, kvHeads: KV, sharedRmsEps: true }, { sizeSource: 'input_ids', attentionMask: 'attention_mask', positionIds: 'position_ids' });
  const norm = (x: string, gain: string): string => rmsNorm(g, x, gain, attn.rmsEps!);

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
    const h = norm(x, g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]));
    const kv = { pastKey: `past_key_values.${i}.key`, pastValue: `past_key_values.${i}.value`, presentKey: `present.${i}.key`, presentValue: `present.${i}.value` };
    x = g.op('Add', [x, attention(g, attn, h, lw, p, kv)]);
    const h2 = norm(x, g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]));
    x = g.op('Add', [x, swiglu(g, h2, lw, p, d, m)]);
  });

  const hf = norm(x, g.floats('model.norm.weight', weights.finalNorm, [d]));
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
