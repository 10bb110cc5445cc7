/**
 * The Hermes format, which Qwen2.5, Qwen3 and the embedded model's template use:
 * `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, any number of them, after optional
 * text. Like vLLM's hermes parser: text before the first call is content; a block whose JSON does
 * not parse stays content; an unterminated last block is read at the end of the completion.
 */
import { toolCallId, type ParsedDelta, type ParsedToolCall, type ToolCallParser, type ToolCallStream } from './parser.ts'

const OPEN = '<tool_call>'
const CLOSE = '</tool_call>'

/** The block's JSON as a call, or null when it is not one. */
function toCall(json: string): ParsedToolCall | null {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const { name, arguments: args, parameters } = value as { name?: unknown; arguments?: unknown; parameters?: unknown }
  if (typeof name !== 'string' || name === '') return null
  const a = args ?? parameters ?? {}
  return { id: toolCallId(), name, arguments: typeof a === 'string' ? a : JSON.stringify(a) }
}

/** Length of the longest end of `text` that could begin `tag` (held back until the next delta). */
function partialTagAt(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n
  return 0
}

class HermesStream implements ToolCallStream {
  private pending = ''
  private inCall = false
  private madeCall = false

  push(text: string): ParsedDelta {
    this.pending += text
    const out: ParsedDelta = { content: '', calls: [] }
    for (;;) {
      if (!this.inCall) {
        const at = this.pending.indexOf(OPEN)
        if (at < 0) {
          const keep = partialTagAt(this.pending, OPEN)
          out.content += this.visible(this.pending.slice(0, this.pending.length - keep))
          this.pending = this.pending.slice(this.pending.length - keep)
          return out
        }
        out.content += this.visible(this.pending.slice(0, at))
        this.pending = this.pending.slice(at + OPEN.length)
        this.inCall = true
      }
      const end = this.pending.indexOf(CLOSE)
      if (end < 0) return out
      const block = this.pending.slice(0, end)
      this.pending = this.pending.slice(end + CLOSE.length)
      this.inCall = false
      const call = toCall(block.trim())
      if (call) {
        out.calls.push(call)
        this.madeCall = true
      } else {
        out.content += OPEN + block + CLOSE
      }
    }
  }

  finish(): ParsedDelta {
    const rest = this.pending
    this.pending = ''
    if (!this.inCall) return { content: this.visible(rest), calls: [] }
    this.inCall = false
    const call = toCall(rest.trim())
    if (call) {
      this.madeCall = true
      return { content: '', calls: [call] }
    }
    return { content: OPEN + rest, calls: [] }
  }

  /** Between and after calls, the template's newlines are not content. */
  private visible(text: string): string {
    return this.madeCall && text.trim() === '' ? '' : text
  }
}

export const hermesParser: ToolCallParser = {
  name: 'hermes',
  start: () => new HermesStream(),
}
