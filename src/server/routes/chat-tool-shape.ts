/**
 * Chat responses of a request with tools: the completion is read by the tool-call parser, calls come
 * back as `message.tool_calls` (streamed as `delta.tool_calls`, one whole call per delta, as vLLM's
 * parsers send them once complete) and the finish reason is "tool_calls" when the model made one.
 */
import type { ResponseShape } from '../generation/shape.ts'
import { parseCompletion, type ParsedToolCall, type ToolCallParser } from '../tool-calls/parser.ts'

function openaiCall(c: ParsedToolCall) {
  return { id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }
}

/** A fresh shape per request: a stream's parse state lives in it. */
export function toolCallShape(plain: ResponseShape, parser: ToolCallParser, parallel: boolean): ResponseShape {
  const stream = parser.start()
  let calls = 0
  let roleSent = false
  return {
    ...plain,
    chunk: (base, text, finishReason) => {
      const parsed = stream.push(text)
      if (finishReason !== null) {
        const rest = stream.finish()
        parsed.content += rest.content
        parsed.calls.push(...rest.calls)
      }
      const fresh = parallel ? parsed.calls : parsed.calls.slice(0, Math.max(0, 1 - calls))
      // Nothing to say yet (text held back while it may open a call): no chunk.
      if (finishReason === null && roleSent && parsed.content === '' && fresh.length === 0) return null
      const delta: Record<string, unknown> = {}
      if (!roleSent) delta.role = 'assistant'
      if (parsed.content !== '' || (!roleSent && fresh.length === 0)) delta.content = parsed.content
      if (fresh.length > 0) delta.tool_calls = fresh.map((c, i) => ({ index: calls + i, ...openaiCall(c) }))
      calls += fresh.length
      roleSent = true
      return {
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason === 'stop' && calls > 0 ? 'tool_calls' : finishReason }],
      }
    },
    whole: (base, text, finishReason, usage) => {
      const parsed = parseCompletion(parser, text)
      const made = parallel ? parsed.calls : parsed.calls.slice(0, 1)
      const message: Record<string, unknown> = { role: 'assistant', content: made.length > 0 ? parsed.content : text }
      if (made.length > 0) message.tool_calls = made.map(openaiCall)
      return {
        ...base,
        object: 'chat.completion',
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason === 'stop' && made.length > 0 ? 'tool_calls' : finishReason }],
        usage,
      }
    },
  }
}
