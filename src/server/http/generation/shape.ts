/** How an endpoint (completions, chat) shapes the responses of a generation request: its adapter to the one responder (responder.ts). */
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
   */
  chunk(base: ChunkBase, text: string, finishReason: FinishReason | null, first: boolean): Record<string, unknown> | Record<string, unknown>[] | null
  /** The non-streamed response. */
  whole(base: ChunkBase, text: string, finishReason: FinishReason, usage: Usage): Record<string, unknown>
  /** The stream_options.include_usage chunk. */
  usageChunk(base: ChunkBase, usage: Usage): Record<string, unknown>
  /** A shape with its own parse state, for another sequence of the same request (n > 1). */
  fork?(): ResponseShape
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
