/**
 * An assistant turn as the routes answer it: the reasoning parser takes the thinking off first, then
 * the tool-call parser reads the rest (vLLM's order). With parallel_tool_calls false only the first
 * call is kept.
 */
import type { ReasoningParser, ReasoningStream } from '../reasoning/parser.ts'
import { assembleCalls, type ParsedToolCall, type ToolCallDelta, type ToolCallParser, type ToolCallStream } from './parser.ts'

export interface AssistantDelta {
  reasoning: string
  content: string
  calls: ToolCallDelta[]
}

export interface AssistantReaders {
  reasoning: ReasoningParser | null
  tools: ToolCallParser | null
  /** parallel_tool_calls (false: one call at most). */
  parallel: boolean
}

export class AssistantStream {
  private readonly reasoning: ReasoningStream | null
  private readonly tools: ToolCallStream | null
  /** Calls made: the finish reason is "tool_calls" then. */
  calls = 0

  constructor(private readonly readers: AssistantReaders) {
    this.reasoning = readers.reasoning?.start() ?? null
    this.tools = readers.tools?.start() ?? null
  }

  push(text: string): AssistantDelta {
    return this.read(this.reasoning ? this.reasoning.push(text) : { reasoning: '', content: text }, false)
  }

  finish(): AssistantDelta {
    return this.read(this.reasoning ? this.reasoning.finish() : { reasoning: '', content: '' }, true)
  }

  private read(r: { reasoning: string; content: string }, atEnd: boolean): AssistantDelta {
    if (!this.tools) return { reasoning: r.reasoning, content: r.content, calls: [] }
    const t = this.tools.push(r.content)
    if (atEnd) {
      const end = this.tools.finish()
      t.content += end.content
      t.calls.push(...end.calls)
    }
    const calls = this.readers.parallel ? t.calls : t.calls.filter((c) => c.index === 0)
    for (const c of calls) if (c.id !== undefined) this.calls++
    return { reasoning: r.reasoning, content: t.content, calls }
  }
}

/** A whole completion: reasoning (null: none), content (null when calls leave none) and calls. */
export function readAssistant(readers: AssistantReaders, text: string): { reasoning: string | null; content: string | null; calls: ParsedToolCall[] } {
  const s = new AssistantStream(readers)
  const a = s.push(text)
  const b = s.finish()
  const reasoning = a.reasoning + b.reasoning
  const content = a.content + b.content
  const calls = assembleCalls([...a.calls, ...b.calls])
  return { reasoning: readers.reasoning && reasoning !== '' ? reasoning : null, content: calls.length > 0 && content.trim() === '' ? null : content, calls }
}
