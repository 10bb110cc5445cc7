/**
 * A completions body as the generation pipeline takes it (vLLM's CompletionRequest.to_sampling_params):
 * its prompts, and its parameters, built and checked once (../generation/params.ts).
 */
import type { GenerateInput } from '../generation/ask.ts'
import { generationParams, type GenerationParams } from '../generation/params.ts'
import type { CompletionBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'

/** OpenAI's legacy default for completions. */
const DEFAULT_MAX_TOKENS = 16

/** One prompt, or several (strings or token arrays): choices prompt-major, n per prompt. */
export function completionInputs(body: CompletionBody): GenerateInput[] {
  const several = Array.isArray(body.prompt) && (typeof body.prompt[0] === 'string' || Array.isArray(body.prompt[0]))
  const prompts = several ? (body.prompt as (string | number[])[]) : [body.prompt as string | number[]]
  return prompts.map((prompt) => (typeof prompt === 'string' ? { text: prompt, inputIds: null, messages: null } : { text: null, inputIds: prompt, messages: null }))
}

/** max_tokens 0 is taken with echo only: the prompt and its logprobs, nothing generated. */
export function completionParams(body: CompletionBody, prompts: readonly GenerateInput[], info: ServingInfo): Promise<GenerationParams> {
  return generationParams(
    {
      body,
      prompts,
      maxTokens: body.max_tokens ?? null,
      defaultMaxTokens: DEFAULT_MAX_TOKENS,
      n: body.n ?? 1,
      bestOf: body.best_of ?? null,
      logprobs: body.logprobs != null,
      logprobsKind: 'completion',
      topLogprobs: body.logprobs ?? null,
      echo: body.echo === true,
    },
    info,
  )
}
