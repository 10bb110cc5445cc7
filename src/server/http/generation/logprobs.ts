/**
 * Logprobs in the client's shape, from the tokenizer's decoded TextLogprobs: chat's
 * (`content[]` of token, logprob, bytes, top_logprobs[]) and the completions' legacy one (tokens,
 * token_logprobs, top_logprobs as token → logprob maps, text_offset). Echoed prompt tokens come
 * first in the legacy shape, the first with null. Streamed, each chunk carries its own tokens and the
 * text offsets continue from the chunk before.
 */
import type { TextLogprobs } from '../../../ipc/messages.ts'

export type LogprobsKind = 'chat' | 'completion'

/** Put `logprobs` on a response's or chunk's first choice (a shape may have made none). */
export function setChoiceLogprobs(body: Record<string, unknown>, logprobs: Record<string, unknown>): void {
  const choice = (body.choices as Record<string, unknown>[] | undefined)?.[0]
  if (choice) choice.logprobs = logprobs
}

/**
 * Each token text's UTF-8 bytes, kept: top_logprobs 20 asks for 21 a token, and token texts come
 * from the vocabulary, so few distinct ones recur. Emptied when it grows past the bound.
 */
const byteCache = new Map<string, number[]>()
const BYTE_CACHE_MAX = 1 << 16

function bytesOf(token: string): number[] {
  let bytes = byteCache.get(token)
  if (bytes === undefined) {
    if (byteCache.size >= BYTE_CACHE_MAX) byteCache.clear()
    byteCache.set(token, (bytes = [...Buffer.from(token, 'utf8')]))
  }
  return bytes
}

/** Sets map[key] as an own property, a key such as "__proto__" or "constructor" included. */
function put(map: Record<string, number>, key: string, value: number): void {
  if (Object.hasOwn(map, key)) return
  if (key === '__proto__') Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true })
  else map[key] = value
}

/** The legacy shape's token → logprob map; vLLM's: the sampled token is always in it. */
function topMap(top: readonly string[], logprobs: ArrayLike<number>, sampled: string, sampledLogprob: number): Record<string, number> {
  const map: Record<string, number> = {}
  for (let i = 0; i < top.length; i++) put(map, top[i]!, logprobs[i]!)
  put(map, sampled, sampledLogprob)
  return map
}

export class LogprobsFormatter {
  /** Characters of the text before the next token (the legacy text_offset). */
  private offset = 0

  constructor(
    readonly kind: LogprobsKind,
    /** Completions' echo: the prompt's tokens come first. */
    private readonly echo: boolean,
    /** False for max_tokens 0 with echo: the one token generated to score the prompt is not shown. */
    private readonly generated = true,
  ) {}

  /** The `logprobs` of one choice (whole) or one chunk (streamed) holding these tokens. */
  format(entries: readonly TextLogprobs[]): Record<string, unknown> {
    if (this.kind === 'chat') {
      return {
        content: entries.map((e) => ({
          token: e.token,
          logprob: e.logprob,
          bytes: bytesOf(e.token),
          top_logprobs: e.top.map((token, i) => ({ token, logprob: e.topLogprobs[i]!, bytes: bytesOf(token) })),
        })),
        refusal: null,
      }
    }
    const tokens: string[] = []
    const tokenLogprobs: (number | null)[] = []
    const top: (Record<string, number> | null)[] = []
    const textOffset: number[] = []
    const add = (token: string, logprob: number | null, alternatives: Record<string, number> | null) => {
      tokens.push(token)
      tokenLogprobs.push(logprob)
      top.push(alternatives)
      textOffset.push(this.offset)
      this.offset += token.length
    }
    for (const e of entries) {
      if (this.echo && e.prompt) {
        for (const p of e.prompt) add(p.token, p.logprob, p.logprob === null ? null : topMap(p.top, p.topLogprobs, p.token, p.logprob))
      }
      if (this.generated) add(e.token, e.logprob, topMap(e.top, e.topLogprobs, e.token, e.logprob))
    }
    return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset }
  }
}
