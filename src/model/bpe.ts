// Byte-level BPE (GPT-2 style) trained on the corpus, written as Hugging Face tokenizer.json.

import { CHAT_TEMPLATE } from './chat-template.ts'

export const EOS_TOKEN = '<|endoftext|>'
export const IM_START = '<|im_start|>'
export const IM_END = '<|im_end|>'
const SPECIAL_TOKENS: readonly string[] = [EOS_TOKEN, IM_START, IM_END]

// The GPT-2 pre-tokenizer pattern, as the ByteLevel pre-tokenizer applies it with use_regex: true.
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** GPT-2's byte → printable character table, so that every byte is a visible vocabulary entry. */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256)
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  let extra = 0
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(printable(b) ? b : 256 + extra++)
  }
  return table
}

export interface TrainedBpe {
  /** Token strings by id: 256 byte symbols, then one per merge, then the special tokens. */
  readonly tokens: readonly string[]
  readonly merges: readonly (readonly [string, string])[]
  readonly specialIds: Readonly<Record<string, number>>
}

/**
 * Train merges until the vocabulary (specials included) reaches vocabSize.
 * Ties between equally frequent pairs go to the lexicographically smallest pair: deterministic.
 */
export function trainBpe(documents: readonly string[], vocabSize: number): TrainedBpe {
  const byteChars = bytesToUnicode()
  const encoder = new TextEncoder()
  const tokens: string[] = [...byteChars]

  // Word types with their counts; a word is a sequence of symbol ids.
  const wordCounts = new Map<string, number>()
  for (const doc of documents) {
    for (const m of doc.matchAll(GPT2_SPLIT)) {
      const w = m[0]
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1)
    }
  }
  const words: number[][] = []
  const counts: number[] = []
  for (const w of [...wordCounts.keys()].sort()) {
    words.push([...encoder.encode(w)])
    counts.push(wordCounts.get(w)!)
  }

  const merges: [string, string][] = []
  const numMerges = vocabSize - 256 - SPECIAL_TOKENS.length
  const KEY = 1 << 16 // symbol ids stay below 65536, so a pair packs into one number
  for (let step = 0; step < numMerges; step++) {
    const pairCounts = new Map<number, number>()
    for (let w = 0; w < words.length; w++) {
      const s = words[w]!
      for (let i = 0; i + 1 < s.length; i++) {
        const key = s[i]! * KEY + s[i + 1]!
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + counts[w]!)
      }
    }
    let best = -1
    let bestCount = 0
    for (const [key, c] of pairCounts) {
      if (c > bestCount || (c === bestCount && comparePair(key, best, tokens, KEY) < 0)) {
        best = key
        bestCount = c
      }
    }
    if (best < 0 || bestCount < 2) break // nothing worth merging: a smaller vocabulary
    const a = Math.floor(best / KEY)
    const b = best % KEY
    const id = tokens.length
    tokens.push(tokens[a]! + tokens[b]!)
    merges.push([tokens[a]!, tokens[b]!])
    for (const s of words) {
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) s.splice(i, 2, id)
      }
    }
  }

  const specialIds: Record<string, number> = {}
  for (const sp of SPECIAL_TOKENS) {
    specialIds[sp] = tokens.length
    tokens.push(sp)
  }
  return { tokens, merges, specialIds }
}

/**
 * Whether a token is text on its own: its bytes are complete UTF-8 with no control character other
 * than tab and newline. The model is built never to emit any other token, so that whatever it
 * generates decodes to text (no U+FFFD from a split character, no \b).
 */
export function isTextToken(token: string, specialIds: Readonly<Record<string, number>>): boolean {
  if (Object.hasOwn(specialIds, token)) return true
  const byteOf = new Map(bytesToUnicode().map((c, b) => [c, b]))
  const bytes: number[] = []
  for (const c of token) {
    const b = byteOf.get(c)
    if (b === undefined) return false
    bytes.push(b)
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes))
  } catch {
    return false
  }
  return !/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffd]/u.test(text)
}

function comparePair(x: number, y: number, tokens: readonly string[], key: number): number {
  if (y < 0) return -1
  const xa = tokens[Math.floor(x / key)]!
  const ya = tokens[Math.floor(y / key)]!
  if (xa !== ya) return xa < ya ? -1 : 1
  const xb = tokens[x % key]!
  const yb = tokens[y % key]!
  return xb < yb ? -1 : xb > yb ? 1 : 0
}

/** tokenizer.json in the Hugging Face tokenizers format (byte-level BPE, like GPT-2 and Qwen2). */
export function tokenizerJson(bpe: TrainedBpe): object {
  const vocab: Record<string, number> = {}
  const numModelTokens = bpe.tokens.length - SPECIAL_TOKENS.length
  for (let id = 0; id < numModelTokens; id++) vocab[bpe.tokens[id]!] = id
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: bpe.specialIds[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      // "a b" strings: the oldest merges format, which every reader accepts (byte symbols hold no space).
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  }
}

export function tokenizerConfigJson(bpe: TrainedBpe, modelMaxLength: number): object {
  const addedTokensDecoder: Record<string, object> = {}
  for (const content of SPECIAL_TOKENS) {
    addedTokensDecoder[String(bpe.specialIds[content])] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    }
  }
  return {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: [IM_START, IM_END],
    bos_token: EOS_TOKEN,
    eos_token: EOS_TOKEN,
    pad_token: EOS_TOKEN,
    unk_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
  }
}
