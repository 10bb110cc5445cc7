// Writes a Llama decoder as an ONNX ModelProto in Optimum's "decoder with past" layout, using only
// standard ops that ONNX Runtime's CPU and CUDA providers (and onnxruntime-web) run at opset 17.

import onnxProto from 'onnx-proto'
import { endianness } from 'node:os'
import { attention, prepareAttention, rmsNorm, swiglu } from './graph-blocks.ts'
import { GraphBuilder, OPSET, valueInfo } from './graph-builder.ts'
import { validateSpec, type LlamaSpec, type LlamaWeights } from './spec.ts'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64

/** Serialised ONNX model (weights inline as raw little-endian float32). */
export function buildLlamaOnnx(spec: LlamaSpec, weights: LlamaWeights): Uint8Array {
  validateSpec(spec)
  if (endianness() !== 'LE') throw new Error('raw ONNX tensors are little-endian; this host is big-endian')
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec
  const g = new GraphBuilder()
  const attn = prepareAttention(g, spec, { heads: H, kvHeads: KV, sharedRmsEps: true }, { sizeSource: 'input_ids', attentionMask: 'attention_mask', positionIds: 'position_ids' })
  const norm = (x: string, gain: string): string => rmsNorm(g, x, gain, attn.rmsEps!)

  let x = g.op('Gather', [g.floats('model.embed_tokens.weight', weights.embed, [V, d]), 'input_ids'], { axis: 0 })
  const inputs = [
    valueInfo('input_ids', INT64, ['batch_size', 'sequence_length']),
    valueInfo('attention_mask', INT64, ['batch_size', 'total_sequence_length']),
    valueInfo('position_ids', INT64, ['batch_size', 'sequence_length']),
  ]
  const outputs = [valueInfo('logits', FLOAT, ['batch_size', 'sequence_length', V])]
  const presentOutputs: ReturnType<typeof valueInfo>[] = []

  weights.layers.forEach((lw, i) => {
    const p = `model.layers.${i}`
    for (const kind of ['key', 'value']) {
      inputs.push(valueInfo(`past_key_values.${i}.${kind}`, FLOAT, ['batch_size', KV, 'past_sequence_length', hd]))
      presentOutputs.push(valueInfo(`present.${i}.${kind}`, FLOAT, ['batch_size', KV, 'total_sequence_length', hd]))
    }
    const h = norm(x, g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]))
    const kv = { pastKey: `past_key_values.${i}.key`, pastValue: `past_key_values.${i}.value`, presentKey: `present.${i}.key`, presentValue: `present.${i}.value` }
    x = g.op('Add', [x, attention(g, attn, h, lw, p, kv)])
    const h2 = norm(x, g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]))
    x = g.op('Add', [x, swiglu(g, h2, lw, p, d, m)])
  })

  const hf = norm(x, g.floats('model.norm.weight', weights.finalNorm, [d]))
  g.op('MatMul', [hf, g.floats('lm_head.weight_t', weights.lmHead, [d, V])], {}, 'logits')

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
  })
  return onnx.ModelProto.encode(model).finish()
}
