// ONNX graphs of one rank's segments: the pieces of the decoder between two all-reduces. They are
// built from the blocks of ../graph-blocks.ts over the rank's heads, as ../onnx-graph.ts builds the
// whole model from them over all heads, so that summing the ranks' partials reproduces the whole
// model; test/model/shard.test.ts holds the two equal.

import onnxProto from 'onnx-proto'
import { endianness } from 'node:os'
import { attention, prepareAttention, rmsNorm, swiglu } from '../graph-blocks.ts'
import { GraphBuilder, OPSET, valueInfo } from '../graph-builder.ts'
import type { LayerWeights, LlamaSpec } from '../spec.ts'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64

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
} as const

const IO = SEGMENT_IO

function finish(g: GraphBuilder, name: string, inputs: ReturnType<typeof valueInfo>[], outputs: ReturnType<typeof valueInfo>[], meta: Record<string, string>): Uint8Array {
  if (endianness() !== 'LE') throw new Error('raw ONNX tensors are little-endian; this host is big-endian')
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'spanserve',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
    graph: { name, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  })
  return onnx.ModelProto.encode(model).finish()
}

/** RMSNorm with an eps tensor of its own, named after the gain (the whole model shares one instead). */
function norm(g: GraphBuilder, spec: LlamaSpec, x: string, gain: string): string {
  return rmsNorm(g, x, gain, g.floats(`${gain}.eps`, Float32Array.of(spec.rmsNormEps), []))
}

/** input_ids [B,S] → hidden_states [B,S,d]; every rank holds the whole (small) embedding. */
export function buildEmbedSegment(spec: LlamaSpec, embed: Float32Array, meta: Record<string, string> = {}): Uint8Array {
  const g = new GraphBuilder()
  const table = g.floats('model.embed_tokens.weight', embed, [spec.vocabSize, spec.hiddenSize])
  g.op('Gather', [table, IO.inputIds], { axis: 0 }, IO.hidden)
  return finish(g, 'embed', [valueInfo(IO.inputIds, INT64, ['batch_size', 'sequence_length'])], [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', spec.hiddenSize])], meta)
}

/**
 * Layer `layer`'s attention over the rank's heads: (hidden [B,S,d], attention_mask [B,T],
 * position_ids [B,S], past_key/value [B,kvHeads,P,hd]) → (partial [B,S,d]: o_proj of the rank's
 * heads only, present_key/value [B,kvHeads,T,hd]). `lw` is the rank's shard (see slice-weights.ts).
 */
export function buildAttentionSegment(spec: LlamaSpec, layer: number, lw: LayerWeights, heads: number, kvHeads: number, meta: Record<string, string> = {}): Uint8Array {
  const { hiddenSize: d, headDim: hd } = spec
  const KV = kvHeads
  const g = new GraphBuilder()
  const p = `model.layers.${layer}`
  const attn = prepareAttention(g, spec, { heads, kvHeads }, { sizeSource: IO.hidden, attentionMask: IO.attentionMask, positionIds: IO.positionIds })
  const h = norm(g, spec, IO.hidden, g.floats(`${p}.input_layernorm.weight`, lw.inputNorm, [d]))
  attention(g, attn, h, lw, p, IO, IO.partial)

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
  )
}

/** Layer `layer`'s SwiGLU over the rank's `units` hidden units: hidden [B,S,d] → partial [B,S,d]. */
export function buildMlpSegment(spec: LlamaSpec, layer: number, lw: LayerWeights, units: number, meta: Record<string, string> = {}): Uint8Array {
  const d = spec.hiddenSize
  const g = new GraphBuilder()
  const p = `model.layers.${layer}`
  const h = norm(g, spec, IO.hidden, g.floats(`${p}.post_attention_layernorm.weight`, lw.postNorm, [d]))
  swiglu(g, h, lw, p, d, units, IO.partial)
  return finish(g, `mlp_${layer}`, [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', d])], [valueInfo(IO.partial, FLOAT, ['batch_size', 'sequence_length', d])], meta)
}

/** Final norm and LM head (rank 0 only): hidden [B,S,d] → logits [B,S,vocab]. */
export function buildHeadSegment(spec: LlamaSpec, finalNorm: Float32Array, lmHead: Float32Array, meta: Record<string, string> = {}): Uint8Array {
  const { hiddenSize: d, vocabSize: V } = spec
  const g = new GraphBuilder()
  const hf = norm(g, spec, IO.hidden, g.floats('model.norm.weight', finalNorm, [d]))
  g.op('MatMul', [hf, g.floats('lm_head.weight_t', lmHead, [d, V])], {}, IO.logits)
  return finish(g, 'head', [valueInfo(IO.hidden, FLOAT, ['batch_size', 'sequence_length', d])], [valueInfo(IO.logits, FLOAT, ['batch_size', 'sequence_length', V])], meta)
}
