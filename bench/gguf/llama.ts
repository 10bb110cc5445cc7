/**
 * The embedded model as a llama-architecture GGUF (F32), the way llama.cpp's convert_hf_to_gguf.py
 * writes a Hugging Face Llama: the same weights spanserve serves, in llama.cpp's tensor names and
 * layout, with the byte-level BPE tokenizer in GGUF's "gpt2" form, so that llama.cpp tokenizes,
 * detokenizes and (greedy) generates as spanserve does. Or quantized to Q8_0 or Q4_0, with the
 * tensor types llama-quantize picks for those file types (see `tensorType`).
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { composeModel, defaultCacheDir, modelHash } from '../../src/model/build.ts'
import type { PresetName } from '../../src/model/presets.ts'
import type { LlamaSpec, LlamaWeights } from '../../src/model/spec.ts'
import { bool, f32, str, TokenType, u32, type GgufMetadata, type GgufTensor, type GgufValue, type TensorTypeName } from './format.ts'
import { quantizeQ4_0, quantizeQ8_0 } from './quantize.ts'
import { writeGguf } from './writer.ts'

/** The file's weight type: F32 as converted, or what `llama-quantize F32.gguf OUT q8_0|q4_0` writes. */
export type GgufQuantization = 'none' | 'q8_0' | 'q4_0'

/** general.file_type: llama_ftype's LLAMA_FTYPE_ALL_F32, _MOSTLY_Q4_0, _MOSTLY_Q8_0. */
const FILE_TYPE: Record<GgufQuantization, number> = { none: 0, q4_0: 2, q8_0: 7 }

/**
 * A 2-D weight's type in llama-quantize's choice (src/llama-quant.cpp, llama_tensor_get_type): norms
 * (1-D) stay F32; every matrix, token_embd included, takes the file's type, except output.weight,
 * which a Q4_0 file keeps at Q6_K where its rows are whole 256-value super-blocks, else at Q8_0
 * (its Q6_K fallback). Here output is Q8_0 in both cases: the default preset's 384-wide rows get
 * Q8_0 from llama.cpp too; the large preset's would be Q6_K (6.6 rather than 8.5 bits per weight,
 * for 1M of its 70M weights), which this writer does not make.
 */
function tensorType(q: GgufQuantization, name: string): TensorTypeName {
  if (q === 'none') return 'F32'
  if (q === 'q8_0' || name === 'output.weight') return 'Q8_0'
  return 'Q4_0'
}

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
export function llamaGguf(src: GgufSource, name: string, quantization: GgufQuantization = 'none'): { metadata: GgufMetadata; tensors: GgufTensor[] } {
  const { spec, weights: w } = src
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m, vocabSize: V } = spec
  const chatTemplate = (src.tokenizerConfig as { chat_template?: string }).chat_template
  const metadata: [string, GgufValue][] = [
    ['general.architecture', str('llama')],
    ['general.name', str(name)],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(FILE_TYPE[quantization])],
    // ggml's block layout version (GGML_QNT_VERSION), which llama-quantize records.
    ...(quantization === 'none' ? [] : [['general.quantization_version', u32(2)] as [string, GgufValue]]),
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
  // ne = [in, out]: ggml quantizes each out row's `in` values, block by block, as it multiplies them.
  const t = (tensorName: string, dims: number[], data: Float32Array): GgufTensor => {
    const type = dims.length === 1 ? 'F32' : tensorType(quantization, tensorName)
    return { name: tensorName, dims, type, data: type === 'Q8_0' ? quantizeQ8_0(data) : type === 'Q4_0' ? quantizeQ4_0(data) : data }
  }
  const tensors: GgufTensor[] = [t('token_embd.weight', [d, V], w.embed)]
  w.layers.forEach((l, i) => {
    const b = `blk.${i}`
    tensors.push(
      t(`${b}.attn_norm.weight`, [d], l.inputNorm),
      t(`${b}.attn_q.weight`, [d, H * hd], toGgufMatrix(l.q, d, H * hd, qOrder)),
      t(`${b}.attn_k.weight`, [d, KV * hd], toGgufMatrix(l.k, d, KV * hd, kOrder)),
      t(`${b}.attn_v.weight`, [d, KV * hd], toGgufMatrix(l.v, d, KV * hd)),
      t(`${b}.attn_output.weight`, [H * hd, d], toGgufMatrix(l.o, H * hd, d)),
      t(`${b}.ffn_norm.weight`, [d], l.postNorm),
      t(`${b}.ffn_gate.weight`, [d, m], toGgufMatrix(l.gate, d, m)),
      t(`${b}.ffn_up.weight`, [d, m], toGgufMatrix(l.up, d, m)),
      t(`${b}.ffn_down.weight`, [m, d], toGgufMatrix(l.down, m, d)),
    )
  })
  // The embedded model's lm_head is its own matrix (tie_word_embeddings false); a tied model would omit output.weight.
  tensors.push(t('output_norm.weight', [d], w.finalNorm), t('output.weight', [d, V], toGgufMatrix(w.lmHead, d, V)))
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

/** The preset's GGUF of one weight type, written beside the model directories from the same build inputs, once. */
export async function ensureGguf(preset: PresetName, opts: { quantization?: GgufQuantization; cacheDir?: string; log?: (line: string) => void } = {}): Promise<string> {
  const dir = opts.cacheDir ?? defaultCacheDir()
  const q = opts.quantization ?? 'none'
  const path = join(dir, `${preset}-${modelHash(preset)}-${converterHash()}${q === 'none' ? '' : `-${q}`}.gguf`)
  if (existsSync(path)) return path
  const t0 = performance.now()
  const model = await composeModel(preset)
  mkdirSync(dir, { recursive: true })
  const { metadata, tensors } = llamaGguf(model, `spanserve-${preset}`, q)
  writeGguf(path, metadata, tensors)
  opts.log?.(`wrote ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return path
}
