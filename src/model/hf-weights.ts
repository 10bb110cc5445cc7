// The fused graph's inputs (LlamaSpec + LlamaWeights) from a Hugging Face checkpoint: config.json and
// safetensors of the architectures whose decoder is Llama's (llama, mistral, qwen2 with its q/k/v
// biases). What the fused graph does not compute (RoPE scaling, a sliding window the context can
// reach, another activation, other biases) is refused with a ModelLoadError that says why, so that
// 'auto' can fall back to the ONNX file and log the reason.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ModelLoadError } from './errors.ts'
import type { ModelInfo } from './load.ts'
import { openCheckpoint, type Checkpoint } from './safetensors.ts'
import type { LayerWeights, LlamaSpec, LlamaWeights } from './spec.ts'

/** model_type values whose checkpoints the fused graph is built from. */
export const CHECKPOINT_MODEL_TYPES: readonly string[] = ['llama', 'qwen2', 'mistral']

export interface FusedInputs {
  spec: LlamaSpec
  weights: LlamaWeights
}

type Json = Record<string, unknown>

/** The rope_type of a rope_scaling (transformers 4) or rope_parameters (transformers 5) object; null where absent. */
function ropeType(v: unknown): string | null {
  if (v === undefined || v === null) return null
  const o = v as Json
  return String(o.rope_type ?? o.type ?? 'default')
}

/**
 * The spec of the fused graph: shape from ModelInfo, the MLP width given, RoPE and RMSNorm constants
 * from config.json. Refuses what the graph does not compute.
 */
export function fusedSpec(model: ModelInfo, intermediateSize: number): LlamaSpec {
  const configPath = join(model.dir, 'config.json')
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as Json
  const refuse = (why: string): never => {
    throw new ModelLoadError(`${configPath}: the fused graph does not implement ${why}`)
  }
  for (const field of ['rope_scaling', 'rope_parameters']) {
    const type = ropeType(cfg[field])
    if (type !== null && type !== 'default') refuse(`${field} of type "${type}"`)
  }
  const partial = cfg.partial_rotary_factor ?? (cfg.rope_parameters as Json | undefined)?.partial_rotary_factor
  if (partial !== undefined && partial !== null && partial !== 1) refuse(`partial_rotary_factor ${JSON.stringify(partial)}`)
  const act = cfg.hidden_act ?? 'silu'
  if (act !== 'silu') refuse(`hidden_act "${String(act)}" (SwiGLU with silu only)`)
  // Qwen2 keeps sliding_window in its config but applies it only with use_sliding_window.
  const window = model.modelType === 'qwen2' && cfg.use_sliding_window !== true ? null : cfg.sliding_window
  if (typeof window === 'number' && window < model.maxPositions) {
    refuse(`sliding_window ${window} below max_position_embeddings ${model.maxPositions} (attention over the whole context only)`)
  }
  const num = (name: string, v: unknown): number => {
    if (typeof v !== 'number' || !(v > 0)) throw new ModelLoadError(`${configPath}: field "${name}" must be a positive number, got ${JSON.stringify(v)}`)
    return v
  }
  return {
    hiddenSize: model.hiddenSize,
    numLayers: model.numLayers,
    numHeads: model.numHeads,
    numKvHeads: model.numKvHeads,
    headDim: model.headDim,
    intermediateSize,
    vocabSize: model.vocabSize,
    maxPositions: model.maxPositions,
    ropeTheta: num('rope_theta', (cfg.rope_parameters as Json | undefined)?.rope_theta ?? cfg.rope_theta ?? 10000),
    rmsNormEps: num('rms_norm_eps', cfg.rms_norm_eps ?? 1e-6),
  }
}

/** Row-major [rows, cols] to [cols, rows]: HF Linear weights are [out, in], the fused graph's MatMuls take [in, out]. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length)
  for (let r = 0; r < rows; r++) {
    const from = r * cols
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[from + c]!
  }
  return out
}

/** The fused graph's spec and weights from the directory's config.json and safetensors. */
export function checkpointFusedInputs(model: ModelInfo): FusedInputs {
  if (!CHECKPOINT_MODEL_TYPES.includes(model.modelType))
    throw new ModelLoadError(`${model.dir}: the fused graph is built from ${CHECKPOINT_MODEL_TYPES.join(', ')} checkpoints, not ${model.modelType}`)
  const ckpt = openCheckpoint(model.dir)
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, vocabSize: V } = model
  const gateShape = ckpt.shape('model.layers.0.mlp.gate_proj.weight')
  const m = gateShape[0]!
  const spec = fusedSpec(model, m)

  const tensor = (ck: Checkpoint, name: string, shape: number[]): Float32Array => {
    const got = ck.shape(name)
    if (got.length !== shape.length || got.some((x, i) => x !== shape[i])) {
      throw new ModelLoadError(`${model.dir}: tensor "${name}" has shape [${got.join(', ')}], config.json implies [${shape.join(', ')}]`)
    }
    return ck.read(name)
  }
  const linear = (name: string, out: number, inp: number): Float32Array => transpose(tensor(ckpt, `${name}.weight`, [out, inp]), out, inp)
  const bias = (name: string, out: number): Float32Array | undefined => (ckpt.has(`${name}.bias`) ? tensor(ckpt, `${name}.bias`, [out]) : undefined)

  const layers: LayerWeights[] = []
  for (let i = 0; i < model.numLayers; i++) {
    const p = `model.layers.${i}`
    for (const name of [`${p}.self_attn.o_proj`, `${p}.mlp.gate_proj`, `${p}.mlp.up_proj`, `${p}.mlp.down_proj`]) {
      if (ckpt.has(`${name}.bias`)) throw new ModelLoadError(`${model.dir}: the fused graph does not implement the bias "${name}.bias" (q/k/v biases only)`)
    }
    layers.push({
      inputNorm: tensor(ckpt, `${p}.input_layernorm.weight`, [d]),
      q: linear(`${p}.self_attn.q_proj`, H * hd, d),
      k: linear(`${p}.self_attn.k_proj`, KV * hd, d),
      v: linear(`${p}.self_attn.v_proj`, KV * hd, d),
      o: linear(`${p}.self_attn.o_proj`, d, H * hd),
      postNorm: tensor(ckpt, `${p}.post_attention_layernorm.weight`, [d]),
      gate: linear(`${p}.mlp.gate_proj`, m, d),
      up: linear(`${p}.mlp.up_proj`, m, d),
      down: linear(`${p}.mlp.down_proj`, d, m),
      qBias: bias(`${p}.self_attn.q_proj`, H * hd),
      kBias: bias(`${p}.self_attn.k_proj`, KV * hd),
      vBias: bias(`${p}.self_attn.v_proj`, KV * hd),
    })
  }
  const embed = tensor(ckpt, 'model.embed_tokens.weight', [V, d])
  const cfg = JSON.parse(readFileSync(join(model.dir, 'config.json'), 'utf8')) as Json
  // Tied: transformers uses the embedding as the output projection and ignores any lm_head.weight.
  const lmHead = cfg.tie_word_embeddings === true ? transpose(embed, V, d) : linear('lm_head', V, d)
  return { spec, weights: { embed, layers, finalNorm: tensor(ckpt, 'model.norm.weight', [d]), lmHead } }
}
