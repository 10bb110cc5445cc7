/**
 * Tool-call parsers: turn a model's own tool-call format back into OpenAI tool calls, as vLLM's
 * --tool-call-parser does. One parser reads a whole completion or a stream, delta by delta.
 */
import { randomBytes } from 'node:crypto'

export interface ParsedToolCall {
  id: string
  name: string
  /** The arguments as a JSON text (OpenAI's `function.arguments`). */
  arguments: string
}

/** What one delta (or the end) of a completion adds: visible text and finished calls. */
export interface ParsedDelta {
  content: string
  calls: ParsedToolCall[]
}

/** One completion's parse state. */
export interface ToolCallStream {
  push(text: string): ParsedDelta
  /** The completion ended: whatever was held back. */
  finish(): ParsedDelta
}

export interface ToolCallParser {
  readonly name: string
  start(): ToolCallStream
}

/** An id in OpenAI's style. */
export function toolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`
}

/** A whole completion: its text without the calls (null when there is none left) and the calls. */
export function parseCompletion(parser: ToolCallParser, text: string): { content: string | null; calls: ParsedToolCall[] } {
  const stream = parser.start()
  const a = stream.push(text)
  const b = stream.finish()
  const content = a.content + b.content
  const calls = [...a.calls, ...b.calls]
  return { content: calls.length > 0 && content.trim() === '' ? null : content, calls }
}
