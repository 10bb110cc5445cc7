/**
 * A long text tokenized in pieces, with a turn of the event loop between them (this process also
 * detokenizes everyone's streams, and @huggingface/tokenizers is synchronous) and a stop as soon
 * as the ids pass a limit, so a prompt too long for the context costs about one context's worth.
 *
 * A piece ends only where the pre-tokenizer splits anyway, so the pieces' ids are the one-shot
 * ids: at a space between two letters ("…word| word"). In the GPT-2 regex (ByteLevel's own) and
 * the Llama-3/Qwen2 Split regex no alternative holds a letter and then a space, so the letter run
 * ends there and the space opens the next word's match; NFC does not compose across a space either.
 * Other pre-tokenizers (Metaspace's prefix, Whitespace, …) are tokenized in one piece.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'

/** 500 to 1,000 tokens: tens of milliseconds at most between turns of the event loop. */
export const PIECE_CHARS = 2048

/** Split regexes for which the boundary above holds (as written in tokenizer.json). */
const KNOWN_SPLIT_REGEXES = new Set([
  // Qwen2, Qwen2.5, Qwen3
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  // Llama 3
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
])

type Json = Record<string, unknown> | null | undefined

function isPlainByteLevel(p: Json, useRegex: boolean): boolean {
  return p?.type === 'ByteLevel' && (p.use_regex !== false) === useRegex && p.add_prefix_space !== true
}

function splitsAtWordSpaces(p: Json): boolean {
  if (isPlainByteLevel(p, true)) return true
  if (p?.type !== 'Sequence') return false
  const [split, byteLevel, ...rest] = (p.pretokenizers as Json[]) ?? []
  const pattern = (split?.pattern as Json)?.Regex
  return (
    rest.length === 0 &&
    split?.type === 'Split' &&
    typeof pattern === 'string' &&
    KNOWN_SPLIT_REGEXES.has(pattern) &&
    split.behavior === 'Isolated' &&
    split.invert !== true &&
    isPlainByteLevel(byteLevel, false)
  )
}

/**
 * A function giving the next piece boundary at or after `from` (or -1 for none), when this
 * tokenizer's pieces are exact; null when it must tokenize in one piece.
 */
export function pieceBoundaries(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>): ((text: string, from: number) => number) | null {
  const model = tokenizerJson.model as Json
  const normalizer = tokenizerJson.normalizer as Json
  if (model?.type !== 'BPE' || (normalizer != null && normalizer.type !== 'NFC')) return null
  if (!splitsAtWordSpaces(tokenizerJson.pre_tokenizer as Json)) return null
  if (tokenizerConfig.remove_space === true || tokenizerConfig.do_lowercase_and_remove_accent === true) return null
  const added = (tokenizerJson.added_tokens as { content: string; lstrip?: boolean; rstrip?: boolean }[] | undefined) ?? []
  // A token that strips the spaces beside it reaches across a boundary.
  if (added.some((t) => t.lstrip === true || t.rstrip === true)) return null
  // An added token with a space inside must not be cut in two.
  const spaced = added.map((t) => t.content).filter((c) => c.includes(' '))
  const straddles = (text: string, p: number) => spaced.some((c) => [...c].some((ch, k) => ch === ' ' && text.startsWith(c, p - k)))
  return (text, from) => {
    const boundary = /(?<=\p{L}) (?=\p{L})/gu
    boundary.lastIndex = from
    for (let m = boundary.exec(text); m !== null; m = boundary.exec(text)) {
      if (!straddles(text, m.index)) return m.index
    }
    return -1
  }
}

export interface PiecesResult {
  ids: number[]
  /** True when tokenizing stopped past the limit: ids holds only the text's first pieces. */
  stoppedEarly: boolean
}

/**
 * `encode(piece, first)` tokenizes one piece (special tokens only on the first). Stops once the ids
 * pass `tokenLimit`; yields to the event loop between pieces.
 */
export async function encodeInPieces(
  text: string,
  tokenLimit: number,
  encode: (piece: string, first: boolean) => number[],
  nextBoundary: ((text: string, from: number) => number) | null,
): Promise<PiecesResult> {
  const ids: number[] = []
  let start = 0
  // One pass at least: an empty text may still get its special tokens.
  do {
    const cut = nextBoundary === null || text.length - start <= PIECE_CHARS ? -1 : nextBoundary(text, start + PIECE_CHARS)
    const end = cut < 0 ? text.length : cut
    for (const id of encode(text.slice(start, end), start === 0)) ids.push(id)
    start = end
    if (start < text.length) {
      if (ids.length > tokenLimit) return { ids, stoppedEarly: true }
      await nextTurn()
    }
  } while (start < text.length)
  return { ids, stoppedEarly: false }
}
