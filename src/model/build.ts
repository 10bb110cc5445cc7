// Builds the embedded model directory (HF/Optimum layout) deterministically, and caches it by content hash.

import { createHash, randomUUID } from 'node:crypto'
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Tokenizer } from '@huggingface/tokenizers'
import { EOS_TOKEN, IM_END, IM_START, isTextToken, tokenizerConfigJson, tokenizerJson, trainBpe } from './bpe.ts'
import { countNgrams, NgramModel } from './ngram.ts'
import { buildLlamaOnnx } from './onnx-graph.ts'
import { PRESETS, type PresetName } from './presets.ts'
import { countParams, type LlamaSpec, type LlamaWeights } from './spec.ts'
import { buildNgramWeights, type NgramBuildInfo } from './weights.ts'

/** Bump to force a rebuild when the output changes for a reason the hashed sources do not show. */
const BUILDER_VERSION = 1

const HERE = dirname(fileURLToPath(import.meta.url))
export const CORPUS_PATH = join(HERE, 'corpus.txt')
/** Tokens of the corpus the RMSNorm gains are calibrated on. */
const CALIBRATION_TOKENS = 32

export interface EnsureModelOptions {
  readonly preset: PresetName
  /** Parent of the model directories; default $SPANSERVE_CACHE_DIR or ~/.cache/spanserve/models. */
  readonly cacheDir?: string
  readonly log?: (line: string) => void
}

/** The corpus split into documents at its <|endoftext|> lines. */
export function corpusDocuments(corpus: string): string[] {
  return corpus
    .split(EOS_TOKEN)
    .map((d) => d.trim())
    .filter((d) => d.length > 0)
}

/** Sources in src/model that do not shape the built files: editing them must not force a rebuild. */
const NOT_BUILD_INPUTS = new Set(['load.ts', 'cli.ts', 'errors.ts', 'quantize.ts', 'fused-graph.ts'])

/** Hash of everything the build reads: the builder's sources, the corpus and the preset. */
export function modelHash(preset: PresetName): string {
  const h = createHash('sha256')
  h.update(`spanserve-model-builder ${BUILDER_VERSION}\n${JSON.stringify(PRESETS[preset])}\n`)
  for (const name of readdirSync(HERE)
    .filter((f) => (f.endsWith('.ts') || f === 'corpus.txt') && !NOT_BUILD_INPUTS.has(f))
    .sort()) {
    h.update(`${name}\n`)
    h.update(readFileSync(join(HERE, name)))
  }
  return h.digest('hex').slice(0, 16)
}

export function defaultCacheDir(): string {
  return process.env.SPANSERVE_CACHE_DIR || join(homedir(), '.cache', 'spanserve', 'models')
}

/** Directory of the preset's model, built first if the cache lacks it. */
export async function ensureModel(opts: EnsureModelOptions): Promise<string> {
  const dir = join(opts.cacheDir ?? defaultCacheDir(), `${opts.preset}-${modelHash(opts.preset)}`)
  // The directory appears only by an atomic rename of a finished build, so its presence means complete.
  if (existsSync(join(dir, 'config.json'))) return dir
  await buildModel(opts.preset, dir, opts.log)
  return dir
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

function configJson(spec: LlamaSpec, eosId: number): object {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: eosId,
    eos_token_id: eosId,
    pad_token_id: eosId,
    head_dim: spec.headDim,
    hidden_act: 'silu',
    hidden_size: spec.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: spec.intermediateSize,
    max_position_embeddings: spec.maxPositions,
    mlp_bias: false,
    num_attention_heads: spec.numHeads,
    num_hidden_layers: spec.numLayers,
    num_key_value_heads: spec.numKvHeads,
    pretraining_tp: 1,
    rms_norm_eps: spec.rmsNormEps,
    rope_scaling: null,
    rope_theta: spec.ropeTheta,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    transformers_version: '4.44.0',
    use_cache: true,
    vocab_size: spec.vocabSize,
  }
}

/** Everything a model directory is made of, before it is written. */
export interface ComposedModel {
  readonly spec: LlamaSpec
  readonly weights: LlamaWeights
  readonly info: NgramBuildInfo
  readonly tokenizerJson: object
  readonly tokenizerConfig: object
  readonly eosId: number
  readonly imEndId: number
  /** The tokenized corpus the statistics came from (documents joined by eos). */
  readonly corpusTokens: readonly number[]
}

export async function composeModel(preset: PresetName): Promise<ComposedModel> {
  const p = PRESETS[preset]
  const docs = corpusDocuments(await fs.readFile(CORPUS_PATH, 'utf8'))
  const bpe = trainBpe(docs, p.vocabSize)
  const tokJson = tokenizerJson(bpe)
  const tokConfig = tokenizerConfigJson(bpe, p.maxPositions)
  // Statistics come from the real tokenizer library, so they match what serving will see.
  const tokenizer = new Tokenizer(tokJson, tokConfig)
  const eosId = bpe.specialIds[EOS_TOKEN]!
  const stream: number[] = []
  for (const doc of docs) stream.push(...tokenizer.encode(doc, { add_special_tokens: false }).ids, eosId)
  const ngrams = new NgramModel(countNgrams(stream, bpe.tokens.length))
  const emittable = bpe.tokens.map((token) => isTextToken(token, bpe.specialIds))
  const { spec, weights, info } = buildNgramWeights({ ...p, vocabSize: bpe.tokens.length }, ngrams, stream.slice(0, CALIBRATION_TOKENS), emittable)
  if (info.prevTokenMinWeight < 0.99) {
    throw new Error(`previous-token head puts only ${info.prevTokenMinWeight} on the previous position`)
  }
  return { spec, weights, info, tokenizerJson: tokJson, tokenizerConfig: tokConfig, eosId, imEndId: bpe.specialIds[IM_END]!, corpusTokens: stream }
}

/**
 * Build the preset's model into outDir, which must not exist yet: the files are written to a
 * sibling temporary directory and renamed into place, so a reader never sees a partial model and
 * two concurrent builders leave one intact copy.
 */
export async function buildModel(preset: PresetName, outDir: string, log: (line: string) => void = () => {}): Promise<string> {
  const started = performance.now()
  const { spec, weights, info, tokenizerJson: tokJson, tokenizerConfig: tokConfig, eosId, imEndId, corpusTokens } = await composeModel(preset)
  const params = countParams(spec)
  log(`building ${preset} model (${spec.numLayers} layers, ${(params / 1e6).toFixed(1)}M params) into ${outDir}`)
  const onnxBytes = buildLlamaOnnx(spec, weights)

  await fs.mkdir(dirname(outDir), { recursive: true })
  const tmp = `${outDir}.tmp-${process.pid}-${randomUUID()}`
  try {
    await fs.mkdir(join(tmp, 'onnx'), { recursive: true })
    await fs.writeFile(join(tmp, 'config.json'), json(configJson(spec, eosId)))
    await fs.writeFile(join(tmp, 'generation_config.json'), json({ bos_token_id: eosId, eos_token_id: [eosId, imEndId], pad_token_id: eosId, transformers_version: '4.44.0' }))
    await fs.writeFile(join(tmp, 'tokenizer.json'), json(tokJson))
    await fs.writeFile(join(tmp, 'tokenizer_config.json'), json(tokConfig))
    await fs.writeFile(join(tmp, 'special_tokens_map.json'), json({ additional_special_tokens: [IM_START, IM_END], bos_token: EOS_TOKEN, eos_token: EOS_TOKEN, pad_token: EOS_TOKEN }))
    await fs.writeFile(join(tmp, 'onnx', 'model.onnx'), onnxBytes)
    // Optimum puts model.onnx at the root, transformers.js looks in onnx/: one file, two names.
    await fs.link(join(tmp, 'onnx', 'model.onnx'), join(tmp, 'model.onnx'))
    await fs.writeFile(join(tmp, 'spanserve_build.json'), json({ preset, builder_version: BUILDER_VERSION, params, ...info, corpus_tokens: corpusTokens.length }))
    await fs.rename(tmp, outDir)
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true })
    const code = (err as NodeJS.ErrnoException).code
    // Another process finished the same build first: its copy is identical, use it.
    if ((code === 'EEXIST' || code === 'ENOTEMPTY') && existsSync(join(outDir, 'config.json'))) return outDir
    throw err
  }
  log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return outDir
}
