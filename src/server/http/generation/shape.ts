/** How an endpoint (completions, chat, Responses) shapes the responses of a generation request: its adapter to the one responder (responder.ts). */
import type { SpanserveError } from '../../../errors.ts'
import type { FinishReason, StrOutput } from '../../../ipc/messages.ts'

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  /** OpenAI's shape: prompt tokens served from the prefix cache (present while the cache is on). */
  prompt_tokens_details?: { cached_tokens: number }
}

export interface ChunkBase {
  id: string
  created: number
  model: string
}

export interface ResponseShape {
  idPrefix: string
  /** gen_ai.operation.name */
  operation: 'text_completion' | 'chat'
  /**
   * The streamed chunk carrying `text` (and the finish reason on the last one), or several (a tool
   * call's opening and its arguments go in chunks of their own); null: nothing to send yet.
   * `logprobs`: the text's tokens' logprobs in the client's shape, when the request asked (the
   * responder puts them on the first chunk's choice; a shape without choices places them itself).
   */
  chunk(base: ChunkBase, text: string, finishReason: FinishReason | null, first: boolean, logprobs: Record<string, unknown> | null): Record<string, unknown> | Record<string, unknown>[] | null
  /** The non-streamed response. */
  whole(base: ChunkBase, text: string, finishReason: FinishReason, usage: Usage): Record<string, unknown>
  /** The stream_options.include_usage chunk. */
  usageChunk(base: ChunkBase, usage: Usage): Record<string, unknown>
  /** A shape with its own parse state, for another sequence of the same request (n > 1). */
  fork?(): ResponseShape
  /** An API whose answer is not OpenAI's choices and chunks (the Responses API); absent: OpenAI's. */
  protocol?: OwnProtocol
}

/**
 * The answer of one sequence in an API of its own (the Responses API): its chunks are named events
 * (their `type`), it opens and closes the stream with events of its own and without `data: [DONE]`,
 * ends a failed stream with its own error event, and shapes the whole answer itself.
 */
export interface OwnProtocol {
  /** Streamed: the events sent after the stream's head, before the first output's. */
  open(base: ChunkBase): Record<string, unknown>[]
  /** Streamed: the events that end a finished stream, after the last output's chunks. */
  close(base: ChunkBase, last: StrOutput): Record<string, unknown>[]
  /** Streamed: the event that ends a stream that failed once started. */
  error(err: SpanserveError): Record<string, unknown>
  /** The non-streamed answer: the text, the last output, and all the tokens' logprobs when asked. */
  whole(base: ChunkBase, text: string, last: StrOutput, logprobs: Record<string, unknown> | null): Record<string, unknown>
  /** The error the client is told for one from the engine. */
  clientError(err: SpanserveError): SpanserveError
}

/** A shape's chunk result as a list. */
export function chunkList(chunk: Record<string, unknown> | Record<string, unknown>[] | null): Record<string, unknown>[] {
  return chunk === null ? [] : Array.isArray(chunk) ? chunk : [chunk]
}

export function usageOf(item: StrOutput): Usage {
  const usage: Usage = { prompt_tokens: item.promptTokens, completion_tokens: item.completionTokens, total_tokens: item.promptTokens + item.completionTokens }
  if (item.cachedTokens !== undefined) usage.prompt_tokens_details = { cached_tokens: item.cachedTokens }
  return usage
}
