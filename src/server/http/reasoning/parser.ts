/**
 * Reasoning parsers: split a reasoning model's thinking from its answer, as vLLM's
 * --reasoning-parser does (the thinking comes back as `reasoning_content`). One parser reads a whole
 * completion or a stream, delta by delta.
 */

export interface ReasoningDelta {
  reasoning: string
  content: string
}

export interface ReasoningStream {
  push(text: string): ReasoningDelta
  /** The completion ended: whatever was held back. */
  finish(): ReasoningDelta
}

export interface ReasoningParser {
  readonly name: string
  start(): ReasoningStream
}

/** A whole completion: its reasoning (null when there is none) and the rest. */
export function splitReasoning(parser: ReasoningParser, text: string): { reasoning: string | null; content: string } {
  const s = parser.start()
  const a = s.push(text)
  const b = s.finish()
  const reasoning = a.reasoning + b.reasoning
  return { reasoning: reasoning === '' ? null : reasoning, content: a.content + b.content }
}
