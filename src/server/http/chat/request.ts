/**
 * A chat body's messages and tools as the tokenizer's chat template reads them, and which tool
 * behaviour the request asks for. Refusals name the field at fault (`param`).
 */
import type { ChatMessage, ChatTool } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import { nestsDeeperThan } from '../../../json-depth.ts'
import type { ChatBody, ChatBodyMessage } from '../schemas.ts'

/** How the completion is read for tool calls. */
export type ToolMode =
  /** No tools, or tool_choice "none": plain text. */
  | { kind: 'none' }
  /** The model may call a tool; its own format is parsed. */
  | { kind: 'auto' }
  /** The model must call a tool (any of them, or this one). */
  | { kind: 'required' }
  | { kind: 'named'; name: string }

function text(content: ChatBodyMessage['content']): string {
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((p) => p.text).join('')
}

/**
 * Arguments as an object where they are JSON (HF templates write them with tojson), else as given.
 * Text nested past the body's bound stays text: the template and the IPC codec walk the object.
 */
export function templateArguments(args: string): unknown {
  if (nestsDeeperThan(args)) return args
  try {
    const value: unknown = JSON.parse(args)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : args
  } catch {
    return args
  }
}

export function chatMessages(messages: readonly ChatBodyMessage[]): ChatMessage[] {
  return messages.map((m) => {
    const out: ChatMessage = { role: m.role, content: text(m.content) }
    if (m.name !== undefined) out.name = m.name
    if (m.role === 'tool' && m.tool_call_id !== undefined) out.tool_call_id = m.tool_call_id
    if (m.role === 'assistant' && m.tool_calls && m.tool_calls.length > 0) {
      out.tool_calls = m.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: templateArguments(c.function.arguments) } }))
    }
    return out
  })
}

/** The tools the template shows (none for tool_choice "none") and the mode; refuses a choice without tools. */
export function chatTools(body: ChatBody, canParse: boolean): { tools: ChatTool[] | null; mode: ToolMode } {
  const tools = body.tools ?? []
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none')
  if (choice === 'none') return { tools: null, mode: { kind: 'none' } }
  if (tools.length === 0) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', 'tool_choice needs a non-empty `tools` list', 'tool_choice')
  const names = new Set<string>()
  for (const [i, t] of tools.entries()) {
    if (names.has(t.function.name)) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `two tools are named ${t.function.name}`, `tools.${i}.function.name`)
    names.add(t.function.name)
  }
  if (!canParse) {
    throw new SpanserveError('SPANSERVE_ERR_VALIDATION', 'tool calls need a tool-call parser; this server runs with --tool-call-parser none', 'tool_choice')
  }
  const listed: ChatTool[] = tools.map((t) => ({ type: 'function', function: { name: t.function.name, description: t.function.description ?? null, parameters: t.function.parameters ?? null } }))
  if (typeof choice === 'object') {
    if (!names.has(choice.function.name)) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `tool_choice names ${choice.function.name}, which is not in tools`, 'tool_choice')
    return { tools: listed, mode: { kind: 'named', name: choice.function.name } }
  }
  return { tools: listed, mode: { kind: choice } }
}
