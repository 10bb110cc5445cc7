/**
 * One request of several sequences (n, best_of, several prompts) may reserve at most
 * --max-request-kv-share of the KV budget: each sequence reserves prompt + max_tokens when it is
 * admitted, so without a bound one request could hold the whole cache while other clients wait.
 * Checked here, before anything is queued, with what the server knows: a token-id prompt's length;
 * a text or chat prompt (tokenized later, in the tokenizer process) counts at least one token; a
 * max_tokens left to the rest of the context reserves the whole context.
 */
import { SpanserveError } from '../../../errors.ts'
import type { ServingInfo } from '../serving-info.ts'
import type { GenerateInput } from './request.ts'

/** KV tokens one sequence of this input reserves, as far as the server can tell. */
function reserves(input: GenerateInput, contextLength: number | undefined): number {
  if (input.maxTokens < 0) return contextLength ?? 0
  return (input.inputIds?.length ?? 1) + input.maxTokens
}

/**
 * Throws a 400 when `perPrompt` sequences of each input reserve more than the request's share.
 * The field named: `best_of` or `n` when a prompt has several sequences, else `prompt` (several prompts).
 */
export function checkKvShare(inputs: readonly GenerateInput[], perPrompt: number, nField: 'n' | 'best_of', info: ServingInfo): void {
  const budget = info.kvBudgetTokens
  if (budget === undefined || inputs.length * perPrompt <= 1) return
  const limit = Math.floor(budget * (info.requestKvShare ?? 1))
  let total = 0
  for (const input of inputs) total += perPrompt * reserves(input, info.contextLength)
  if (total <= limit) return
  const param = perPrompt > 1 ? nField : 'prompt'
  const maxTokens = inputs[0]!.maxTokens < 0 ? 'the rest of the context' : String(inputs[0]!.maxTokens)
  throw new SpanserveError(
    'SPANSERVE_ERR_INVALID_REQUEST',
    `${inputs.length} prompt(s) × ${param === 'best_of' ? 'best_of' : 'n'} (${perPrompt}) × (prompt + max_tokens: ${maxTokens}) reserve ${total} KV tokens, more than one request may hold: ${limit} (--max-request-kv-share ${info.requestKvShare ?? 1} of --max-total-tokens ${budget}); lower ${param} or max_tokens`,
    param,
  )
}
