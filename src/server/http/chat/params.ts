/**
 * A chat body's parameters (vLLM's ChatCompletionRequest.to_sampling_params), built and checked once
 * (../generation/params.ts): max_completion_tokens, else max_tokens, else the rest of the context;
 * logprobs in chat's shape. The Responses API maps its body onto a chat body and comes here too.
 */
import type { GenerateInput } from '../generation/ask.ts'
import { generationParams, type GenerationParams } from '../generation/params.ts'
import type { ChatBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'

/** `keepSpecialTokens`: the request's tool-call parser reads special tokens. */
export function chatParams(body: ChatBody, input: GenerateInput, info: ServingInfo, keepSpecialTokens = false): Promise<GenerationParams> {
  return generationParams(
    {
      body,
      prompts: [input],
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
      // Without max_tokens, chat may use the rest of the context (-1 tells the tokenizer so).
      defaultMaxTokens: -1,
      n: body.n ?? 1,
      bestOf: null,
      logprobs: body.logprobs === true,
      logprobsKind: 'chat',
      topLogprobs: body.top_logprobs ?? null,
      echo: false,
      keepSpecialTokens,
    },
    info,
  )
}
