// Reads a Hugging Face / Optimum model directory (llama, qwen2, mistral, gpt2 families) into the
// few facts the server needs, failing with a message that names the file and field at fault.

import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ModelLoadError } from './errors.ts'
import { hasSafetensors } from './safetensors.ts'

export interface ModelInfo {
  dir: string
  /** '' where the directory holds a safetensors checkpoint and no ONNX decoder: only the fused graph serves it. */
  onnxPath: string
  modelType: string
  numLayers: number
  numHeads: number
  numKvHeads: number
  headDim: number
  hiddenSize: number
  vocabSize: number
  maxPositions: number
  eosTokenIds: number[]
  bosTokenId: number | null
  /** Set by checkSignature: whether the graph takes position_ids. */
  hasPositionIds?: boolean
}

/** Where Optimum and transformers.js put the decoder, in the order we prefer them. */
const ONNX_CANDIDATES: readonly string[] = ['model.onnx', 'decoder_model_merged.onnx', 'decoder_with_past_model.onnx', join('onnx', 'model.onnx')]

type Json = Record<string, unknown>

function readJson(path: string, required: boolean): Json | null {
  if (!existsSync(path)) {
    if (required) throw new ModelLoadError(`${path} does not exist`)
    return null
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ModelLoadError(`${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ModelLoadError(`${path} must hold a JSON object`)
  }
  return parsed as Json
}

/** The first of `names` present in the config, as a positive integer. */
function intField(cfg: Json, file: string, names: readonly string[], fallback?: number): number {
  for (const name of names) {
    if (cfg[name] === undefined || cfg[name] === null) continue
    const v = cfg[name]
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ModelLoadError(`${file}: field "${name}" must be a positive integer, got ${JSON.stringify(v)}`)
    }
    return v
  }
  if (fallback !== undefined) return fallback
  throw new ModelLoadError(`${file}: missing field "${names[0]}"`)
}

function tokenIds(v: unknown, file: string, field: string): number[] {
  if (v === undefined || v === null) return []
  const list = Array.isArray(v) ? v : [v]
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new ModelLoadError(`${file}: field "${field}" must be a token id or a list of them, got ${JSON.stringify(v)}`)
    }
  }
  return list as number[]
}

const FAMILIES = ['llama', 'qwen2', 'mistral', 'gpt2'] as const

/** The .onnx files of a model directory and its onnx/ folder, relative to it, for error messages. */
function onnxFilesIn(dir: string): string[] {
  const found: string[] = []
  for (const sub of ['', 'onnx']) {
    const at = join(dir, sub)
    if (!existsSync(at)) continue
    for (const f of readdirSync(at)) if (f.endsWith('.onnx')) found.push(relative(dir, join(at, f)))
  }
  return found.sort()
}

/**
 * The facts of a model directory. `onnxFile` (relative to dir) picks one of several ONNX files, as
 * published directories ship model.onnx beside model_q4.onnx; empty takes the first candidate.
 */
export function readModelInfo(dir: string, onnxFile = ''): ModelInfo {
  if (!existsSync(dir)) throw new ModelLoadError(`model directory ${dir} does not exist`)
  const configPath = join(dir, 'config.json')
  const cfg = readJson(configPath, true)!
  const modelType = cfg.model_type
  if (typeof modelType !== 'string' || !(FAMILIES as readonly string[]).includes(modelType)) {
    throw new ModelLoadError(`${configPath}: field "model_type" is ${JSON.stringify(modelType)}; supported: ${FAMILIES.join(', ')}`)
  }

  let numLayers: number, numHeads: number, numKvHeads: number, hiddenSize: number, maxPositions: number
  if (modelType === 'gpt2') {
    numLayers = intField(cfg, configPath, ['n_layer', 'num_hidden_layers'])
    numHeads = intField(cfg, configPath, ['n_head', 'num_attention_heads'])
    numKvHeads = numHeads
    hiddenSize = intField(cfg, configPath, ['n_embd', 'hidden_size'])
    maxPositions = intField(cfg, configPath, ['n_positions', 'n_ctx', 'max_position_embeddings'])
  } else {
    numLayers = intField(cfg, configPath, ['num_hidden_layers'])
    numHeads = intField(cfg, configPath, ['num_attention_heads'])
    numKvHeads = intField(cfg, configPath, ['num_key_value_heads'], numHeads)
    hiddenSize = intField(cfg, configPath, ['hidden_size'])
    maxPositions = intField(cfg, configPath, ['max_position_embeddings'])
  }
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(`${configPath}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`)
  }
  const defaultHeadDim = hiddenSize / numHeads
  const headDim = intField(cfg, configPath, ['head_dim'], Number.isInteger(defaultHeadDim) ? defaultHeadDim : undefined)
  const vocabSize = intField(cfg, configPath, ['vocab_size'])

  // generation_config.json overrides config.json, as transformers does; either may hold a list.
  const genPath = join(dir, 'generation_config.json')
  const gen = readJson(genPath, false)
  let eosTokenIds = tokenIds(cfg.eos_token_id, configPath, 'eos_token_id')
  let bos = tokenIds(cfg.bos_token_id, configPath, 'bos_token_id')
  if (gen) {
    const genEos = tokenIds(gen.eos_token_id, genPath, 'eos_token_id')
    if (genEos.length > 0) eosTokenIds = [...new Set([...genEos, ...eosTokenIds])]
    const genBos = tokenIds(gen.bos_token_id, genPath, 'bos_token_id')
    if (genBos.length > 0) bos = genBos
  }
  for (const id of eosTokenIds) {
    if (id >= vocabSize) throw new ModelLoadError(`${configPath}: eos_token_id ${id} is not below vocab_size ${vocabSize}`)
  }

  let onnxPath: string
  if (onnxFile) {
    onnxPath = join(dir, onnxFile)
    if (!existsSync(onnxPath)) {
      const present = onnxFilesIn(dir)
      throw new ModelLoadError(`${onnxPath} does not exist (--onnx-file is relative to the model directory, which holds ${present.length > 0 ? present.join(', ') : 'no .onnx file'})`)
    }
  } else {
    const candidate = ONNX_CANDIDATES.find((f) => existsSync(join(dir, f)))
    if (candidate) onnxPath = join(dir, candidate)
    else if (modelType !== 'gpt2' && hasSafetensors(dir)) onnxPath = ''
    else throw new ModelLoadError(`${dir} holds no ONNX decoder (looked for ${ONNX_CANDIDATES.join(', ')}) nor a safetensors checkpoint`)
  }
  const tokenizerPath = join(dir, 'tokenizer.json')
  if (!existsSync(tokenizerPath)) throw new ModelLoadError(`${tokenizerPath} does not exist`)

  return {
    dir,
    onnxPath,
    modelType,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    hiddenSize,
    vocabSize,
    maxPositions,
    eosTokenIds,
    bosTokenId: bos[0] ?? null,
  }
}

/**
 * Checks an ONNX session's inputs and outputs against the config (Optimum's decoder-with-past
 * names); sets info.hasPositionIds. Throws ModelLoadError naming the first missing name.
 */
export function checkSignature(info: ModelInfo, inputNames: readonly string[], outputNames: readonly string[]): void {
  const inputs = new Set(inputNames)
  const outputs = new Set(outputNames)
  const need = (set: Set<string>, name: string, kind: string): void => {
    if (!set.has(name)) {
      throw new ModelLoadError(
        `${info.onnxPath}: the graph has no ${kind} "${name}" (an Optimum decoder with past key values is expected; ` + `${kind}s: ${[...set].slice(0, 8).join(', ')}${set.size > 8 ? ', …' : ''})`,
      )
    }
  }
  need(inputs, 'input_ids', 'input')
  need(inputs, 'attention_mask', 'input')
  need(outputs, 'logits', 'output')
  for (let i = 0; i < info.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      need(inputs, `past_key_values.${i}.${kind}`, 'input')
      need(outputs, `present.${i}.${kind}`, 'output')
    }
  }
  info.hasPositionIds = inputs.has('position_ids')
}
