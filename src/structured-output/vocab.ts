/**
 * What xgrammar needs to know of a tokenizer, read from a Hugging Face tokenizer.json: every
 * token's string by id, how those strings encode bytes, and which ids end the output.
 */
import { readFileSync } from 'node:fs'

export type VocabType = 'byte_level' | 'byte_fallback' | 'raw'

export interface GrammarVocab {
  /** Token strings as the tokenizer stores them, by id; '' for special tokens and unused ids. */
  encoded: string[]
  vocabType: VocabType
  /** SentencePiece-style tokenizers add a space before the text ("▁" on the first word). */
  prependSpace: boolean
  /** The model's logits width: the mask covers it (config's vocab_size, which may pad past the tokenizer's). */
  vocabSize: number
  /** The ids that may end a constrained output (the model's EOS ids). */
  stopTokenIds: number[]
  /** Each token's first and last byte (0 for an empty one): see Utf8Guard. */
  firstByte: Uint8Array
  lastByte: Uint8Array
}

/** GPT-2's byte-level alphabet, reversed: the byte each printable stand-in character means. */
function byteLevelDecoder(): Map<string, number> {
  const map = new Map<string, number>()
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
    map.set(String.fromCodePoint(printable ? b : 256 + extra++), b)
  }
  return map
}

const utf8 = new TextEncoder()

/** A token's bytes, as its vocabulary type spells them. */
export function tokenBytes(token: string, vocabType: VocabType, byteLevel: Map<string, number>): Uint8Array {
  if (vocabType === 'byte_level') {
    const out: number[] = []
    for (const ch of token) {
      const b = byteLevel.get(ch)
      if (b === undefined) out.push(...utf8.encode(ch))
      else out.push(b)
    }
    return Uint8Array.from(out)
  }
  if (vocabType === 'byte_fallback') {
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(token)
    if (m) return Uint8Array.of(parseInt(m[1]!, 16))
    return utf8.encode(token.replaceAll('\u2581', ' '))
  }
  return utf8.encode(token)
}

/**
 * Whether the bytes can be part of valid UTF-8 in some context: continuation bytes may open the
 * token (they end a character an earlier token began) and a character may be left unfinished at
 * its end, but no byte is one UTF-8 never uses (C0, C1, F5-FF), and no character inside the token is
 * overlong, a surrogate or past U+10FFFF. xgrammar lets such bytes through a negated character class
 * such as JSON's string class, and they decode to U+FFFD.
 */
export function utf8Possible(bytes: Uint8Array): boolean {
  let i = 0
  while (i < bytes.length && (bytes[i]! & 0xc0) === 0x80) i++
  if (i > 3) return false
  while (i < bytes.length) {
    const b = bytes[i]!
    if (b < 0x80) {
      i++
      continue
    }
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1
    if (need < 0) return false
    const [lo, hi] = firstContinuation(b)
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length) return true
      const c = bytes[i + k]!
      if (k === 1 ? c < lo || c > hi : (c & 0xc0) !== 0x80) return false
    }
    i += need + 1
  }
  return true
}

/** The range the byte after a lead byte must fall in (narrower than 80-BF after E0, ED, F0 and F4). */
export function firstContinuation(lead: number): [number, number] {
  switch (lead) {
    case 0xe0:
      return [0xa0, 0xbf]
    case 0xed:
      return [0x80, 0x9f]
    case 0xf0:
      return [0x90, 0xbf]
    case 0xf4:
      return [0x80, 0x8f]
    default:
      return [0x80, 0xbf]
  }
}

type Json = Record<string, unknown>

function componentTypes(node: unknown): string[] {
  if (node === null || typeof node !== 'object') return []
  const n = node as Json
  const nested = [n.decoders, n.normalizers, n.pretokenizers].flatMap((list) => (Array.isArray(list) ? list.flatMap(componentTypes) : []))
  return typeof n.type === 'string' ? [n.type, ...nested] : nested
}

/**
 * Tokens whose bytes are never valid UTF-8 are blanked too (see utf8Possible).
 * Special tokens (`special: true`, e.g. `<|im_start|>`) are blanked: xgrammar would otherwise treat
 * their text as text that a JSON string may contain; blank, they are never allowed, except the stop
 * ids once the grammar is complete. Added tokens that are not special (`<tool_call>` in Qwen) keep it.
 */
export function grammarVocab(tokenizerJson: string, vocabSize: number, stopTokenIds: readonly number[]): GrammarVocab {
  const tj = JSON.parse(tokenizerJson) as Json
  const model = (tj.model ?? {}) as Json
  const encoded: string[] = new Array<string>(vocabSize).fill('')
  const vocab = model.vocab
  if (Array.isArray(vocab)) {
    // Unigram: [piece, score] pairs in id order.
    vocab.forEach((entry, id) => {
      if (id < vocabSize && Array.isArray(entry)) encoded[id] = String(entry[0])
    })
  } else if (vocab && typeof vocab === 'object') {
    for (const [piece, id] of Object.entries(vocab as Record<string, number>)) if (id < vocabSize) encoded[id] = piece
  }
  for (const t of (tj.added_tokens ?? []) as { id: number; content: string; special?: boolean }[]) {
    if (t.id < vocabSize) encoded[t.id] = t.special ? '' : t.content
  }
  const types = [...componentTypes(tj.decoder), ...componentTypes(tj.pre_tokenizer), ...componentTypes(tj.normalizer)]
  const vocabType: VocabType = types.includes('ByteLevel') ? 'byte_level' : types.includes('ByteFallback') || model.byte_fallback === true ? 'byte_fallback' : 'raw'
  const prependSpace = types.includes('Metaspace') || types.includes('Prepend')
  const firstByte = new Uint8Array(vocabSize)
  const lastByte = new Uint8Array(vocabSize)
  const byteLevel = byteLevelDecoder()
  for (let id = 0; id < vocabSize; id++) {
    if (encoded[id] === '') continue
    const bytes = tokenBytes(encoded[id]!, vocabType, byteLevel)
    // Never valid UTF-8: blanked, so never allowed.
    if (!utf8Possible(bytes)) encoded[id] = ''
    else if (bytes.length > 0) {
      firstByte[id] = bytes[0]!
      lastByte[id] = bytes[bytes.length - 1]!
    }
  }
  return { encoded, vocabType, prependSpace, vocabSize, stopTokenIds: [...stopTokenIds], firstByte, lastByte }
}

export function readGrammarVocab(tokenizerPath: string, vocabSize: number, stopTokenIds: readonly number[]): GrammarVocab {
  return grammarVocab(readFileSync(tokenizerPath, 'utf8'), vocabSize, stopTokenIds)
}
