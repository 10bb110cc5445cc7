/**
 * Every check of a generation request that its body schema cannot say, in one place: the model it
 * names, and the fields that bound each other (max_tokens 0 only with echo, top_logprobs only with
 * logprobs, best_of against n and streaming, min_tokens against max_tokens, the sequences one request
 * may run and the KV they may reserve). A refusal names the field at fault (`param`). What needs the
 * prompt's tokens (prompt plus max_tokens against the context, token ids against the vocabulary) is
 * checked by the tokenizer, which has them (src/tokenizer/intake.ts).
 */
import { SpanserveError } from '../../../errors.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import type { GenerateInput, GenerationAsk } from './ask.ts'

/** More sequences than this in one request of several prompts is refused. */
const MAX_SEQUENCES = 1024

export function checkModel(body: SamplingBody, info: ServingInfo): void {
  if (body.model !== info.modelName) {
    throw new SpanserveError('SPANSERVE_ERR_MODEL_NOT_FOUND', `The model \`${body.model}\` does not exist; this server serves \`${info.modelName}\``, 'model')
  }
}

function invalid(message: string, param: string): SpanserveError {
  return new SpanserveError('SPANSERVE_ERR_VALIDATION', message, param)
}

/** The cross-field checks; `maxTokens` is what the request runs with (-1: the rest of the context). */
export function checkAsk(ask: GenerationAsk, maxTokens: number, info: ServingInfo): void {
  if (ask.maxTokens === 0 && !ask.echo) throw invalid('max_tokens must be at least 1; 0 is taken only with echo: true (the prompt and its logprobs, nothing generated)', 'max_tokens')
  if (ask.topLogprobs !== null && !ask.logprobs) throw invalid('top_logprobs needs logprobs set to true', 'top_logprobs')
  const { n, bestOf } = ask
  if (bestOf !== null && bestOf < n) throw invalid(`best_of (${bestOf}) must be greater than or equal to n (${n})`, 'best_of')
  if (bestOf !== null && bestOf > n && ask.body.stream === true) throw invalid('best_of greater than n cannot be streamed', 'best_of')
  const perPrompt = Math.max(n, bestOf ?? 1)
  const prompts = ask.prompts.length
  if (prompts > 1 && perPrompt * prompts > MAX_SEQUENCES) throw invalid(`${prompts} prompts × ${perPrompt} choices is more than ${MAX_SEQUENCES} sequences`, 'prompt')
  checkKvShare(ask.prompts, maxTokens, perPrompt, bestOf !== null && bestOf > n ? 'best_of' : 'n', info)
  const minTokens = ask.body.min_tokens
  if (minTokens && maxTokens >= 0 && minTokens > maxTokens) throw invalid(`min_tokens (${minTokens}) must be less than or equal to max_tokens (${maxTokens})`, 'min_tokens')
}

/**
 * One request of several sequences (n, best_of, several prompts) may reserve at most
 * --max-request-kv-share of the KV budget: each sequence reserves prompt + max_tokens when it is
 * admitted, so without a bound one request could hold the whole cache while other clients wait.
 * Checked before anything is queued, with what the server knows: a token-id prompt's length; a text
 * or chat prompt (tokenized later, in the tokenizer process) counts at least one token; a max_tokens
 * left to the rest of the context reserves the whole context. The field named: `best_of` or `n` when
 * a prompt has several sequences, else `prompt` (several prompts).
 */
function checkKvShare(prompts: readonly GenerateInput[], maxTokens: number, perPrompt: number, nField: 'n' | 'best_of', info: ServingInfo): void {
  const budget = info.kvBudgetTokens
  if (budget === undefined || prompts.length * perPrompt <= 1) return
  const limit = Math.floor(budget * (info.requestKvShare ?? 1))
  let total = 0
  for (const p of prompts) total += perPrompt * (maxTokens < 0 ? (info.contextLength ?? 0) : (p.inputIds?.length ?? 1) + maxTokens)
  if (total <= limit) return
  const param = perPrompt > 1 ? nField : 'prompt'
  const asked = maxTokens < 0 ? 'the rest of the context' : String(maxTokens)
  throw new SpanserveError(
    'SPANSERVE_ERR_INVALID_REQUEST',
    `${prompts.length} prompt(s) × ${param === 'best_of' ? 'best_of' : 'n'} (${perPrompt}) × (prompt + max_tokens: ${asked}) reserve ${total} KV tokens, more than one request may hold: ${limit} (--max-request-kv-share ${info.requestKvShare ?? 1} of --max-total-tokens ${budget}); lower ${param} or max_tokens`,
    param,
  )
}
