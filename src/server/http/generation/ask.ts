/**
 * What a generation request asks, as its endpoint reads its body (completions/params.ts,
 * chat/params.ts): the one input of the params build (params.ts) and of its checks (checks.ts).
 */
import type { ChatMessage, ChatTool } from '../../../ipc/messages.ts'
import type { SamplingBody } from '../schemas.ts'
import type { LogprobsKind } from './logprobs.ts'

/** One prompt: text, token ids or chat messages (exactly one is set). */
export interface GenerateInput {
  text: string | null
  inputIds: number[] | null
  messages: ChatMessage[] | null
  /** Tools for the chat template (chat only). */
  tools?: ChatTool[] | null
}

export interface GenerationAsk {
  /** The fields every generation body shares: model, sampling, stop, ignore_eos, stream, the output constraint. */
  body: SamplingBody
  /** Each prompt; choices are indexed prompt-major. */
  prompts: readonly GenerateInput[]
  /** max_tokens as asked (null: not given), and the endpoint's default (-1: the rest of the context). */
  maxTokens: number | null
  defaultMaxTokens: number
  /** Choices returned per prompt. */
  n: number
  /** Sequences generated per prompt, the n most likely returned (null: n). */
  bestOf: number | null
  /** Whether logprobs are asked, in which shape, and how many alternatives per token (null: not given). */
  logprobs: boolean
  logprobsKind: LogprobsKind
  topLogprobs: number | null
  /** Completions' echo: the prompt comes back before the completion. */
  echo: boolean
  /** A tool-call parser reads special tokens ([TOOL_CALLS]): the tokenizer keeps them in the text (vLLM's adjust_request). */
  keepSpecialTokens?: boolean
}
