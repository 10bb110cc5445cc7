/**
 * A token's logprobs as the client reads them: ids decoded to their text, one token at a time (a
 * token that is part of a UTF-8 character decodes to U+FFFD, as in vLLM's output).
 */
import type { TextLogprobs, TokenLogprobs } from '../ipc/messages.ts'
import type { Decoder } from './detokenizer.ts'

/**
 * Each token's text alone, decoded once per decoder: top_logprobs 20 asks for 21 texts per generated
 * token, and a decode call costs far more than a lookup.
 */
const texts = new WeakMap<Decoder, Map<number, string>>()

function tokenText(d: Decoder, id: number): string {
  let known = texts.get(d)
  if (!known) texts.set(d, (known = new Map()))
  let text = known.get(id)
  if (text === undefined) known.set(id, (text = d.decode([id])))
  return text
}

function topTexts(d: Decoder, ids: ArrayLike<number>): string[] {
  const out = new Array<string>(ids.length)
  for (let i = 0; i < ids.length; i++) out[i] = tokenText(d, ids[i]!)
  return out
}

/** The numbers pass through as the worker gave them (a Float32Array travels in the message's binary part). */
export function textLogprobs(d: Decoder, token: number, lp: TokenLogprobs, promptIds: readonly number[] | null): TextLogprobs {
  const out: TextLogprobs = { token: tokenText(d, token), logprob: lp.logprob, top: topTexts(d, lp.topIds), topLogprobs: lp.topLogprobs }
  if (lp.prompt && promptIds) {
    const p = lp.prompt
    out.prompt = promptIds.map((id, i) => ({ token: tokenText(d, id), logprob: p.logprobs[i] ?? null, top: topTexts(d, p.topIds[i] ?? []), topLogprobs: p.topLogprobs[i] ?? [] }))
  }
  return out
}
