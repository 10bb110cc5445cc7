/**
 * Chat responses read by the reasoning and tool-call parsers: thinking comes back as
 * `reasoning_content`, calls as `message.tool_calls`, and the finish reason is "tool_calls" when the
 * model made one. Streamed, each call's arguments go out as they are generated, in OpenAI's shape: a
 * first delta with index, id, type and name (arguments ""), then deltas with arguments fragments
 * only, each its own chunk.
 */
import type { ChunkBase, ResponseShape } from '../generation/shape.ts'
import { AssistantStream, readAssistant, type AssistantReaders } from '../tool-calls/assistant-output.ts'
import type { ParsedToolCall, ToolCallDelta } from '../tool-calls/parser.ts'

function openaiCall(c: ParsedToolCall) {
  return { id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }
}

/** Call pieces as OpenAI's delta.tool_calls entries: a call's opening, then its fragments joined. */
function callEntries(pieces: readonly ToolCallDelta[]): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = []
  let last: { index: number; fn: { arguments: string } } | null = null
  for (const p of pieces) {
    if (p.id !== undefined) {
      entries.push({ index: p.index, id: p.id, type: 'function', function: { name: p.name, arguments: '' } })
      last = null
      if (p.arguments === '') continue
    }
    if (last && last.index === p.index) {
      last.fn.arguments += p.arguments
      continue
    }
    const fn = { arguments: p.arguments }
    entries.push({ index: p.index, function: fn })
    last = { index: p.index, fn }
  }
  return entries
}

/** A fresh shape per request: a stream's parse state lives in it. */
export function assistantShape(plain: ResponseShape, readers: AssistantReaders): ResponseShape {
  const stream = new AssistantStream(readers)
  let roleSent = false
  const chunkOf = (base: ChunkBase, delta: Record<string, unknown>, finishReason: string | null) => ({
    ...base,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  })
  const finishOf = (finishReason: string | null) => (finishReason === 'stop' && stream.calls > 0 ? 'tool_calls' : finishReason)
  return {
    ...plain,
    fork: () => assistantShape(plain, readers),
    chunk: (base, text, finishReason) => {
      const d = stream.push(text)
      if (finishReason !== null) {
        const end = stream.finish()
        d.reasoning += end.reasoning
        d.content += end.content
        d.calls.push(...end.calls)
      }
      const deltas: Record<string, unknown>[] = []
      if (d.reasoning !== '' || d.content !== '' || !roleSent) {
        const delta: Record<string, unknown> = {}
        if (!roleSent) delta.role = 'assistant'
        if (d.reasoning !== '') delta.reasoning_content = d.reasoning
        if (d.content !== '' || (!roleSent && d.reasoning === '' && d.calls.length === 0)) delta.content = d.content
        deltas.push(delta)
        roleSent = true
      }
      for (const entry of callEntries(d.calls)) deltas.push({ tool_calls: [entry] })
      // Nothing to say yet (text held back while it may open a call or a tag): no chunk.
      if (finishReason === null && deltas.length === 0) return null
      if (deltas.length === 0) deltas.push({})
      return deltas.map((delta, i) => chunkOf(base, delta, i === deltas.length - 1 && finishReason !== null ? finishOf(finishReason) : null))
    },
    whole: (base, text, finishReason, usage) => {
      const parsed = readAssistant(readers, text)
      const message: Record<string, unknown> = { role: 'assistant', content: parsed.content }
      if (readers.reasoning) message.reasoning_content = parsed.reasoning
      if (parsed.calls.length > 0) message.tool_calls = parsed.calls.map(openaiCall)
      return {
        ...base,
        object: 'chat.completion',
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason === 'stop' && parsed.calls.length > 0 ? 'tool_calls' : finishReason }],
        usage,
      }
    },
  }
}
