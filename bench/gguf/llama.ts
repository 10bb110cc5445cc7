/**
 * The embedded model as a llama-architecture GGUF (F32), the way llama.cpp's convert_hf_to_gguf.py
 * writes a Hugging Face Llama: the same weights spanserve serves, in llama.cpp's tensor names and
 * layout, with the byte-level BPE tokenizer in GGUF's "gpt2" form, so that llama.cpp tokenizes,
 * detokenizes and (greedy) generates as spanserve does.
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { composeModel, defaultCacheDir, modelHash } from '../../src/model/build.ts'
import type { PresetName } from '../../src/model/presets.ts'
import type { LlamaSpec, LlamaWeights } from '../../src/model/spec.ts'
import { bool, f32, str, TokenType, u32, type GgufMetadata, type GgufTensor, type GgufValue } from './format.ts'
import { writeGguf } from './writer.ts'

/** What a GGUF is made from: the parts of src/model/build.ts's ComposedModel it reads. */
export interface GgufSource {
  spec: LlamaSpec
  weights: LlamaWeights
  /** Hugging Face tokenizer.json (byte-level BPE) and tokenizer_config.json. */
  tokenizerJson: object
  tokenizerConfig: object
  eosId: number
}

interface TokenizerJson {
  added_tokens: { id: number; content: string; special: boolean }[]
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] }
  pre_tokenizer?: { type?: string }
}

/** Our matrices are [in, out] row-major (x · W); GGUF holds Hugging Face's [out, in] row-major, ne = [in, out]. */
function toGgufMatrix(w: Float32Array, inDim: number, outDim: number, rowOrder?: Int32Array): Float32Array {
  const out = new Float32Array(w.length)
  for (let o = 0; o < outDim; o++) {
    const src = rowOrder ? rowOrder[o]! : o
    for (let i = 0; i < inDim; i++) out[o * inDim + i] = w[i * outDim + src]!
  }
  return out
}

/**
 * Row order that turns HF's rotary layout (each head's dims rotated in (j, j + half) pairs,
 * rotate_half) into llama.cpp's for the llama architecture (adjacent pairs (2j, 2j + 1), rope type
 * NORM): what convert_hf_to_gguf.py's LlamaModel.permute does to q_proj and k_proj.
 */
export function ropeRowOrder(heads: number, headDim: number): Int32Array {
  const half = headDim / 2
  const order = new Int32Array(heads * headDim)
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) order[h * headDim + 2 * j + s] = h * headDim + s * half + j
    }
  }
  return order
}

function tokenizerMetadata(tok: TokenizerJson, eosId: number): [string, GgufValue][] {
  if (tok.model.type !== 'BPE' || tok.pre_tokenizer?.type !== 'ByteLevel') throw new Error('only byte-level BPE tokenizers (GPT-2 style) are written')
  const size = Math.max(...Object.values(tok.model.vocab), ...tok.added_tokens.map((t) => t.id)) + 1
  const tokens: string[] = new Array(size)
  const types: number[] = new Array(size).fill(TokenType.normal)
  for (const [text, id] of Object.entries(tok.model.vocab)) tokens[id] = text
  // Added special tokens are control tokens: never produced by tokenizing plain text, rendered as '' when skipping specials.
  for (const t of tok.added_tokens) {
    tokens[t.id] = t.content
    types[t.id] = t.special ? TokenType.control : TokenType.userDefined
  }
  for (let i = 0; i < size; i++) if (tokens[i] === undefined) throw new Error(`token id ${i} has no text`)
  const merges = tok.model.merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`))
  return [
    ['tokenizer.ggml.model', str('gpt2')],
    // GPT-2's pre-tokenizer regex, which src/model/bpe.ts trains and tokenizes with.
    ['tokenizer.ggml.pre', str('gpt-2')],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: types }],
    ['tokenizer.ggml.merges', { type: 'array', of: 'string', value: merges }],
    ['tokenizer.ggml.bos_token_id', u32(eosId)],
    ['tokenizer.ggml.eos_token_id', u32(eosId)],
    ['tokenizer.ggml.padding_token_id', u32(eosId)],
    // tokenizer_config.json has add_bos_token false: prompts are the text's tokens alone, as in spanserve.
    ['tokenizer.ggml.add_bos_token', bool(false)],
    ['tokenizer.ggml.add_eos_token', bool(false)],
  ]
}

/** Metadata and tensors of the GGUF, in llama.cpp's llama-architecture keys and tensor names. */
export function llamaGguf(src: GgufSource, name: string): { metadata: GgufMetadata; tensors: GgufTensor[] } {
  const { spec, weights: w } = src
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec
  const chatTemplate = (src.tokenizerConfig as { chat_template?: string }).chat_template
  const metadata: [string, GgufValue][] = [
    ['general.architecture', str('llama')],
    ['general.name', str(name)],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(0)], // LLAMA_FTYPE_ALL_F32
    ['llama.vocab_size', u32(V)],
    ['llama.context_length', u32(spec.maxPositions)],
    ['llama.embedding_length', u32(d)],
    ['llama.block_count', u32(spec.numLayers)],
    ['llama.feed_forward_length', u32(m)],
    ['llama.attention.head_count', u32(H)],
    ['llama.attention.head_count_kv', u32(KV)],
    ['llama.attention.key_length', u32(hd)],
    ['llama.attention.value_length', u32(hd)],
    ['llama.attention.layer_norm_rms_epsilon', f32(spec.rmsNormEps)],
    ['llama.rope.freq_base', f32(spec.ropeTheta)],
    ['llama.rope.dimension_count', u32(hd)],
    ...tokenizerMetadata(src.tokenizerJson as TokenizerJson, src.eosId),
    ...(chatTemplate ? [['tokenizer.chat_template', str(chatTemplate)] as [string, GgufValue]] : []),
  ]
  const qOrder = ropeRowOrder(H, hd)
  const kOrder = ropeRowOrder(KV, hd)
  const tensors: GgufTensor[] = [{ name: 'token_embd.weight', dims: [d, V], data: w.embed }]
  w.layers.forEach((l, i) => {
    const b = `blk.${i}`
    tensors.push(
      { name: `${b}.attn_norm.weight`, dims: [d], data: l.inputNorm },
      { name: `${b}.attn_q.weight`, dims: [d, H * hd], data: toGgufMatrix(l.q, d, H * hd, qOrder) },
      { name: `${b}.attn_k.weight`, dims: [d, KV * hd], data: toGgufMatrix(l.k, d, KV * hd, kOrder) },
      { name: `${b}.attn_v.weight`, dims: [d, KV * hd], data: toGgufMatrix(l.v, d, KV * hd) },
      { name: `${b}.attn_output.weight`, dims: [H * hd, d], data: toGgufMatrix(l.o, H * hd, d) },
      { name: `${b}.ffn_norm.weight`, dims: [d], data: l.postNorm },
      { name: `${b}.ffn_gate.weight`, dims: [d, m], data: toGgufMatrix(l.gate, d, m) },
      { name: `${b}.ffn_up.weight`, dims: [d, m], data: toGgufMatrix(l.up, d, m) },
      { name: `${b}.ffn_down.weight`, dims: [m, d], data: toGgufMatrix(l.down, m, d) },
    )
  })
  // The embedded model's lm_head is its own matrix (tie_word_embeddings false); a tied model would omit output.weight.
  tensors.push({ name: 'output_norm.weight', dims: [d], data: w.finalNorm }, { name: 'output.weight', dims: [d, V], data: toGgufMatrix(w.lmHead, d, V) })
  return { metadata, tensors }
}

const HERE = dirname(fileURLToPath(import.meta.url))

/** The converter's own sources: editing them writes a new file rather than reusing a stale one. */
function converterHash(): string {
  const h = createHash('sha256')
  for (const f of readdirSync(HERE)
    .filter((x) => x.endsWith('.ts') && x !== 'reader.ts')
    .sort())
    h.update(f).update(readFileSync(join(HERE, f)))
  return h.digest('hex').slice(0, 8)
}

/** The preset's GGUF, written beside the model directories from the same build inputs, once. */
export async function ensureGguf(preset: PresetName, opts: { cacheDir?: string; log?: (line: string) => void } = {}): Promise<string> {
  const dir = opts.cacheDir ?? defaultCacheDir()
  const path = join(dir, `${preset}-${modelHash(preset)}-${converterHash()}.gguf`)
  if (existsSync(path)) return path
  const t0 = performance.now()
  const model = await composeModel(preset)
  mkdirSync(dir, { recursive: true })
  const { metadata, tensors } = llamaGguf(model, `spanserve-${preset}`)
  writeGguf(path, metadata, tensors)
  opts.log?.(`wrote ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return path
}
