/**
 * Logprobs in the client's shape, from the tokenizer's decoded TextLogprobs: chat's
 * (`content[]` of token, logprob, bytes, top_logprobs[]) and the completions' legacy one (tokens,
 * token_logprobs, top_logprobs as token → logprob maps, text_offset). Echoed prompt tokens come
 * first in the legacy shape, the first with null. Streamed, each chunk carries its own tokens and the
 * text offsets continue from the chunk before.
 */
import type { TextLogprobs, TokenText } from '../../ipc/messages.ts'

export type LogprobsKind = 'chat' | 'completion'

/** Put `logprobs` on a response's or chunk's first choice (a shape may have made none). */
export function setChoiceLogprobs(body: Record<string, unknown>, logprobs: Record<string, unknown>): void {
  const choice = (body.choices as Record<string, unknown>[] | undefined)?.[0]
  if (choice) choice.logprobs = logprobs
}

function bytesOf(token: string): number[] {
  return [...Buffer.from(token, 'utf8')]
}

function topMap(top: readonly TokenText[], sampled: TokenText | null): Record<string, number> {
  const map: Record<string, number> = {}
  for (const t of top) if (!(t.token in map)) map[t.token] = t.logprob
  // vLLM's: the sampled token is always in the map.
  if (sampled && !(sampled.token in map)) map[sampled.token] = sampled.logprob
  return map
}

export class LogprobsFormatter {
  /** Characters of the text before the next token (the legacy text_offset). */
  private offset = 0

  constructor(
    readonly kind: LogprobsKind,
    /** Completions' echo: the prompt's tokens come first. */
    private readonly echo: boolean,
  ) {}

  /** The `logprobs` of one choice (whole) or one chunk (streamed) holding these tokens. */
  format(entries: readonly TextLogprobs[]): Record<string, unknown> {
    if (this.kind === 'chat') {
      return {
        content: entries.map((e) => ({
          token: e.token,
          logprob: e.logprob,
          bytes: bytesOf(e.token),
          top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t.token) })),
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
        for (const p of e.prompt) add(p.token, p.logprob, p.logprob === null ? null : topMap(p.top, { token: p.token, logprob: p.logprob }))
      }
      add(e.token, e.logprob, topMap(e.top, e))
    }
    return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset }
  }
}
