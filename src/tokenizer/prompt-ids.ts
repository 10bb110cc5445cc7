/**
 * A prompt's ids, refused as soon as it is known not to fit the context: from its length alone
 * when it has more characters than its share of the context could hold (prompt-bound.ts), else
 * once its tokenizing passes that share (pieces.ts). Either way the cost is bounded by the
 * context, not by the prompt. The ids of a prompt that fits are the one-shot ids.
 */
import { SpanserveError } from '../errors.ts'
import { exceedsCharBound } from './prompt-bound.ts'
import type { TextTokenizer } from './tokenize.ts'

export interface PromptLimit {
  /** The context length in tokens. */
  context: number
  /** Tokens kept for the completion (at least 1 to generate; 0 for /tokenize). */
  completion: number
  /** The request field the prompt came in: prompt, messages. */
  param: string
}

/** Words in the message of a refusal made before tokenizing (tests look for them). */
export const REFUSED_BEFORE_TOKENIZING = 'refused before tokenizing'

export async function boundedPromptIds(tok: TextTokenizer, text: string, addSpecialTokens: boolean, limit: PromptLimit): Promise<number[]> {
  const tokenLimit = Math.max(limit.context - limit.completion, 0)
  const reduce = limit.completion > 1 ? 'Please reduce the prompt or max_tokens.' : 'Please reduce the prompt.'
  const share = limit.completion > 0 ? `the ${tokenLimit} tokens left of it after ${limit.completion} for the completion` : 'that many tokens'
  if (exceedsCharBound(text.length, tokenLimit, tok.charsPerToken)) {
    throw new SpanserveError(
      'SPANSERVE_ERR_CONTEXT_LENGTH',
      `This model's maximum context length is ${limit.context} tokens. However, your prompt has ${text.length} characters, more than ${share} can hold (no token of this model stands for more than ${tok.charsPerToken} characters), so it was ${REFUSED_BEFORE_TOKENIZING}. ${reduce}`,
      limit.param,
    )
  }
  const { ids, stoppedEarly } = await tok.encodeBounded(text, addSpecialTokens, tokenLimit)
  if (ids.length > tokenLimit) {
    const count = stoppedEarly ? `more than ${share} (tokenizing stopped at ${ids.length})` : `${ids.length} tokens, more than ${share}`
    throw new SpanserveError(
      'SPANSERVE_ERR_CONTEXT_LENGTH',
      `This model's maximum context length is ${limit.context} tokens. However, your prompt has ${count}. ${reduce}`,
      limit.param,
    )
  }
  return ids
}
