/**
 * Tool-call parsers: turn a model's own tool-call format back into OpenAI tool calls, as vLLM's
 * --tool-call-parser does. One parser reads a whole completion or a stream, delta by delta, and
 * gives each call's arguments as they are generated (OpenAI's streamed delta shape): first the
 * call's index, id and name, then fragments of its arguments' JSON text.
 */
import { randomBytes, randomInt } from 'node:crypto'

export interface ParsedToolCall {
  id: string
  name: string
  /** The arguments as a JSON text (OpenAI's `function.arguments`). */
  arguments: string
}

/** A piece of one call: its first piece has `id` and `name`; the others only an arguments fragment. */
export interface ToolCallDelta {
  index: number
  id?: string
  name?: string
  arguments: string
}

/** What one delta (or the end) of a completion adds: visible text and call pieces, in order. */
export interface ParsedDelta {
  content: string
  calls: ToolCallDelta[]
}

/** One completion's parse state. */
export interface ToolCallStream {
  push(text: string): ParsedDelta
  /** The completion ended: whatever was held back. */
  finish(): ParsedDelta
}

export interface ToolCallParser {
  readonly name: string
  /**
   * It reads special tokens (Mistral's `[TOOL_CALLS]`): the tokenizer keeps them in the text of the
   * requests it reads (vLLM's adjust_request sets skip_special_tokens false for the same reason).
   */
  readonly keepsSpecialTokens?: boolean
  start(): ToolCallStream
}

/** An id in OpenAI's style. */
export function toolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** Mistral's templates refuse any id but 9 alphanumerics when the call comes back in the history. */
export function mistralCallId(): string {
  let id = ''
  for (let i = 0; i < 9; i++) id += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)]
  return id
}

/** Numbers a completion's calls and gives each its id. */
export class CallNumbering {
  private next = 0
  constructor(private readonly newId: () => string = toolCallId) {}

  /** A new call's first piece. */
  open(name: string): ToolCallDelta {
    return { index: this.next++, id: this.newId(), name, arguments: '' }
  }

  /** The index of the call opened last. */
  get current(): number {
    return this.next - 1
  }
}

/** Appends `b` to `a`. */
export function addDelta(a: ParsedDelta, b: ParsedDelta): ParsedDelta {
  a.content += b.content
  for (const c of b.calls) a.calls.push(c)
  return a
}

/** The whole calls that a sequence of pieces makes. */
export function assembleCalls(pieces: readonly ToolCallDelta[]): ParsedToolCall[] {
  const calls: ParsedToolCall[] = []
  for (const p of pieces) {
    if (p.id !== undefined) calls[p.index] = { id: p.id, name: p.name ?? '', arguments: p.arguments }
    else if (calls[p.index]) calls[p.index]!.arguments += p.arguments
  }
  return calls.filter((c) => c !== undefined)
}

/** A whole completion: its text without the calls (null when there is none left) and the calls. */
export function parseCompletion(parser: ToolCallParser, text: string): { content: string | null; calls: ParsedToolCall[] } {
  const stream = parser.start()
  const all = addDelta(stream.push(text), stream.finish())
  const calls = assembleCalls(all.calls)
  return { content: calls.length > 0 && all.content.trim() === '' ? null : all.content, calls }
}

/** Length of the longest end of `text` that could begin `tag` (held back until the next delta). */
export function partialTagAt(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n
  return 0
}
