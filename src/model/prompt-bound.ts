/**
 * How many characters a prompt of N tokens can have at most, read from tokenizer.json: when every
 * token stands for a piece of the text (a partition), no token covers more characters than the
 * longest token string, so a text longer than N × that cannot be N tokens or fewer. The check costs
 * nothing, so a huge prompt is refused before a second of tokenizing is spent on it: by the server
 * from the request's text fields (a lower bound of the prompt), and by the tokenizer from the whole.
 */
import { SpanserveError } from '../errors.ts'

/** Normalizers that never drop text, with how far they can shrink it (in UTF-16 units). */
const NORMALIZER_SHRINK: Record<string, number> = {
  // Composition joins up to three units into a character of two UTF-8 bytes (U + U+0308 + U+0304
  // → Ǖ), and compatibility maps a surrogate pair to one ASCII byte (𝐀 → A): at most 2 units a byte.
  NFC: 2,
  NFKC: 2,
  NFD: 1,
  NFKD: 2,
  Lowercase: 1,
  Prepend: 1,
}

/** Pre-tokenizers that keep every character (Whitespace, BertPreTokenizer, … drop some). */
const KEEPING_PRE_TOKENIZERS = new Set(['ByteLevel', 'Split', 'Metaspace', 'Digits', 'Punctuation', 'UnicodeScripts'])

type Json = Record<string, unknown> | null | undefined

function normalizerShrink(n: Json): number {
  if (n == null) return 1
  if (n.type === 'Sequence') return ((n.normalizers as Json[]) ?? []).reduce((f, m) => f * normalizerShrink(m), 1)
  return NORMALIZER_SHRINK[n.type as string] ?? Infinity
}

function keepsEveryCharacter(p: Json): boolean {
  if (p == null) return true
  if (p.type === 'Sequence') return ((p.pretokenizers as Json[]) ?? []).every(keepsEveryCharacter)
  return KEEPING_PRE_TOKENIZERS.has(p.type as string) && String(p.behavior).toLowerCase() !== 'removed' && p.invert !== true
}

/**
 * The most UTF-16 units of input text one token can stand for, or Infinity where this tokenizer
 * may drop or fuse text (a normalizer that strips, a pre-tokenizer that removes whitespace, fused
 * unknowns, added tokens that strip the spaces beside them): then no bound is claimed.
 * A byte-level token's string has one character per byte, and a UTF-16 unit is at least one byte.
 */
export function charsPerTokenBound(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, vocab: Iterable<string>): number {
  const model = tokenizerJson.model as Json
  if (model?.type !== 'BPE' || (model.fuse_unk === true && model.unk_token != null)) return Infinity
  if (!keepsEveryCharacter(tokenizerJson.pre_tokenizer as Json)) return Infinity
  if (tokenizerConfig.remove_space === true || tokenizerConfig.do_lowercase_and_remove_accent === true) return Infinity
  const added = (tokenizerJson.added_tokens as { lstrip?: boolean; rstrip?: boolean }[] | undefined) ?? []
  if (added.some((t) => t.lstrip === true || t.rstrip === true)) return Infinity
  const shrink = normalizerShrink(tokenizerJson.normalizer as Json)
  if (!Number.isFinite(shrink)) return Infinity
  // At least 2: an unknown character outside the BMP is two units under one (maybe short) token.
  let longest = 2
  for (const t of vocab) if (t.length > longest) longest = t.length
  return longest * shrink
}

/** True when a text of `chars` UTF-16 units cannot be `tokenLimit` tokens or fewer. */
export function exceedsCharBound(chars: number, tokenLimit: number, charsPerToken: number): boolean {
  return chars > tokenLimit * charsPerToken
}

export interface PromptLimit {
  /** The context length in tokens. */
  context: number
  /** Tokens kept for the completion (at least 1 to generate; 0 for /tokenize and the server's check). */
  completion: number
  /** The request field the prompt came in: prompt, messages, input. */
  param: string
}

/** Words in the message of a refusal made before tokenizing (tests look for them). */
export const REFUSED_BEFORE_TOKENIZING = 'refused before tokenizing'

/** Tokens of the context left for the prompt. */
export function promptTokenLimit(limit: PromptLimit): number {
  return Math.max(limit.context - limit.completion, 0)
}

/** What a refusal asks the caller to reduce. */
export function reduceAdvice(limit: PromptLimit): string {
  return limit.completion > 1 ? 'Please reduce the prompt or max_tokens.' : 'Please reduce the prompt.'
}

/** How a refusal names the prompt's share of the context. */
export function shareText(limit: PromptLimit): string {
  return limit.completion > 0 ? `the ${promptTokenLimit(limit)} tokens left of it after ${limit.completion} for the completion` : 'that many tokens'
}

/** The 400 for a prompt of `chars` UTF-16 units that cannot fit its share of the context, or null when it may. */
export function charBoundRefusal(chars: number, limit: PromptLimit, charsPerToken: number): SpanserveError | null {
  if (!exceedsCharBound(chars, promptTokenLimit(limit), charsPerToken)) return null
  return new SpanserveError(
    'SPANSERVE_ERR_CONTEXT_LENGTH',
    `This model's maximum context length is ${limit.context} tokens. However, your prompt has ${chars} characters, more than ${shareText(limit)} can hold (no token of this model stands for more than ${charsPerToken} characters), so it was ${REFUSED_BEFORE_TOKENIZING}. ${reduceAdvice(limit)}`,
    limit.param,
  )
}
