// Reads a spanserve-built model back into LlamaSpec + LlamaWeights: the spec from config.json, the
// weights from model.onnx's initializers by name. Other graphs (Optimum exports) fuse, rename and
// transpose their weights, so they are refused with one clear error instead of guessed at.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import onnxProto from 'onnx-proto'
import { readModelInfo } from '../load.ts'
import { validateSpec, type LayerWeights, type LlamaSpec, type LlamaWeights } from '../spec.ts'
import { TpModelFormatError } from './errors.ts'

const { onnx } = onnxProto
type TensorProto = InstanceType<typeof onnx.TensorProto>

const NEEDS_SPANSERVE = 'tensor parallelism (--tp-size > 1) needs a spanserve-format model (the embedded model, or a directory spanserve built)'

function numberField(cfg: Record<string, unknown>, name: string, file: string): number {
  const v = cfg[name]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TpModelFormatError(`${file}: field "${name}" must be a number for ${NEEDS_SPANSERVE}`)
  return v
}

/** The full LlamaSpec of a model directory (readModelInfo's facts plus the MLP width, RoPE and norm constants). */
export function readLlamaSpec(dir: string): LlamaSpec {
  const info = readModelInfo(dir)
  const file = join(dir, 'config.json')
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  if (info.modelType !== 'llama') throw new TpModelFormatError(`${NEEDS_SPANSERVE}; ${dir} is a ${info.modelType} model`)
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) throw new TpModelFormatError(`${file}: rope_scaling is not supported by ${NEEDS_SPANSERVE}`)
  const spec: LlamaSpec = {
    hiddenSize: info.hiddenSize,
    numLayers: info.numLayers,
    numHeads: info.numHeads,
    numKvHeads: info.numKvHeads,
    headDim: info.headDim,
    intermediateSize: numberField(cfg, 'intermediate_size', file),
    vocabSize: info.vocabSize,
    maxPositions: info.maxPositions,
    ropeTheta: numberField(cfg, 'rope_theta', file),
    rmsNormEps: numberField(cfg, 'rms_norm_eps', file),
  }
  validateSpec(spec)
  return spec
}

function floatsOf(t: TensorProto): Float32Array {
  if (t.dataType !== onnx.TensorProto.DataType.FLOAT) throw new Error(`initializer ${t.name} is not float32`)
  if (t.rawData && t.rawData.length > 0) {
    // Copy: the proto's bytes are a view of the file buffer at any alignment.
    const out = new Float32Array(t.rawData.length / 4)
    new Uint8Array(out.buffer).set(t.rawData)
    return out
  }
  return Float32Array.from(t.floatData ?? [])
}

/** Weights of a spanserve-built model.onnx; throws TpModelFormatError for any other graph. */
export function loadLlamaWeights(onnxPath: string, spec: LlamaSpec): LlamaWeights {
  const model = onnx.ModelProto.decode(readFileSync(onnxPath))
  if (model.producerName !== 'spanserve') {
    throw new TpModelFormatError(`${NEEDS_SPANSERVE}; ${onnxPath} was produced by "${model.producerName || 'an unknown exporter'}"`)
  }
  const byName = new Map<string, TensorProto>()
  for (const t of model.graph?.initializer ?? []) byName.set(t.name ?? '', t as TensorProto)
  const get = (name: string, dims: number[]): Float32Array => {
    const t = byName.get(name)
    if (!t) throw new TpModelFormatError(`${NEEDS_SPANSERVE}; ${onnxPath} has no initializer "${name}"`)
    const got = (t.dims ?? []).map(Number)
    if (got.join(',') !== dims.join(',')) throw new TpModelFormatError(`${onnxPath}: initializer "${name}" has shape [${got}], config.json implies [${dims}]`)
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
