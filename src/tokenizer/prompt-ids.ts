/**
 * A prompt's ids, refused as soon as it is known not to fit the context: from its length alone
 * when it has more characters than its share of the context could hold (prompt-bound.ts), else
 * once its tokenizing passes that share (pieces.ts). Either way the cost is bounded by the
 * context, not by the prompt. The ids of a prompt that fits are the one-shot ids.
 */
import { SpanserveError } from '../errors.ts'
import { charBoundRefusal, promptTokenLimit, reduceAdvice, shareText, type PromptLimit } from '../model/prompt-bound.ts'
import type { TextTokenizer } from './tokenize.ts'

export async function boundedPromptIds(tok: TextTokenizer, text: string, addSpecialTokens: boolean, limit: PromptLimit): Promise<number[]> {
  const refusal = charBoundRefusal(text.length, limit, tok.charsPerToken)
  if (refusal) throw refusal
  const tokenLimit = promptTokenLimit(limit)
  const reduce = reduceAdvice(limit)
  const share = shareText(limit)
  const { ids, stoppedEarly } = await tok.encodeBounded(text, addSpecialTokens, tokenLimit)
  if (ids.length > tokenLimit) {
    const count = stoppedEarly ? `more than ${share} (tokenizing stopped at ${ids.length})` : `${ids.length} tokens, more than ${share}`
    throw new SpanserveError('SPANSERVE_ERR_CONTEXT_LENGTH', `This model's maximum context length is ${limit.context} tokens. However, your prompt has ${count}. ${reduce}`, limit.param)
  }
  return ids
}
