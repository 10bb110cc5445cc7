/**
 * The weights of a model.onnx that spanserve's builder wrote (onnx-graph.ts's initializer names),
 * each checked against the shape the spec implies. Read by the fused graph (worker/model-graph.ts)
 * and by tensor-parallel sharding (tp/load-weights.ts); each says in its own error what it needs.
 */
import onnxProto from 'onnx-proto'
import type { LayerWeights, LlamaSpec, LlamaWeights } from './spec.ts'

const { onnx } = onnxProto
type ModelProto = InstanceType<typeof onnx.ModelProto>
type TensorProto = InstanceType<typeof onnx.TensorProto>

type WeightDims = Pick<LlamaSpec, 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize' | 'vocabSize'>

function floatsOf(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) {
    // Copy: the proto's bytes are a view of the file buffer at any alignment.
    const out = new Float32Array(t.rawData.length / 4)
    new Uint8Array(out.buffer).set(t.rawData)
    return out
  }
  return Float32Array.from(t.floatData ?? [])
}

/** `fail` makes the error for a missing, misshapen or non-float32 initializer from what is wrong. */
export function spanserveOnnxWeights(file: ModelProto, path: string, spec: WeightDims, fail: (problem: string) => Error): LlamaWeights {
  const byName = new Map<string, TensorProto>()
  for (const t of file.graph?.initializer ?? []) byName.set(t.name ?? '', t as TensorProto)
  const get = (name: string, dims: number[]): Float32Array => {
    const t = byName.get(name)
    if (!t) throw fail(`${path} has no initializer "${name}"`)
    if (t.dataType !== onnx.TensorProto.DataType.FLOAT) throw fail(`${path}: initializer "${name}" is not float32`)
    const got = (t.dims ?? []).map(Number)
    if (got.join(',') !== dims.join(',')) throw fail(`${path}: initializer "${name}" has shape [${got}], config.json implies [${dims}]`)
    return floatsOf(t)
  }
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec
  const layers: LayerWeights[] = []
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}`
    layers.push({
      inputNorm: get(`${p}.input_layernorm.weight`, [d]),
      q: get(`${p}.self_attn.q_proj.weight_t`, [d, H * hd]),
      k: get(`${p}.self_attn.k_proj.weight_t`, [d, KV * hd]),
      v: get(`${p}.self_attn.v_proj.weight_t`, [d, KV * hd]),
      o: get(`${p}.self_attn.o_proj.weight_t`, [H * hd, d]),
      postNorm: get(`${p}.post_attention_layernorm.weight`, [d]),
      gate: get(`${p}.mlp.gate_proj.weight_t`, [d, m]),
      up: get(`${p}.mlp.up_proj.weight_t`, [d, m]),
      down: get(`${p}.mlp.down_proj.weight_t`, [m, d]),
    })
  }
  return { embed: get('model.embed_tokens.weight', [V, d]), layers, finalNorm: get('model.norm.weight', [d]), lmHead: get('lm_head.weight_t', [d, V]) }
}

/** The MLP width a spanserve-written file holds (config.json's may be absent from a checkpoint's spec): 0 when it has none. */
export function spanserveMlpWidth(file: ModelProto): number {
  const gate = file.graph?.initializer?.find((t) => t.name === 'model.layers.0.mlp.gate_proj.weight_t')
  return Number(gate?.dims?.[1] ?? 0)
}
