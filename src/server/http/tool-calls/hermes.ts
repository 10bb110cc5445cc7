/**
 * The Hermes format, which Qwen2.5, Qwen3 and the embedded model's template use:
 * `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, any number of them, after optional
 * text. Like vLLM's hermes parser: text before the first call is content; the arguments stream as
 * they are generated; a block whose JSON does not parse (and has not begun streaming) stays
 * content; an unterminated last block is read at the end of the completion.
 */
import { JsonCallReader } from './json-call.ts'
import { addDelta, CallNumbering, partialTagAt, type ParsedDelta, type ToolCallParser, type ToolCallStream } from './parser.ts'

const OPEN = '<tool_call>'
const CLOSE = '</tool_call>'

class HermesStream implements ToolCallStream {
  private pending = ''
  /** The open block's reader and its text (shown as content when it is not a call). */
  private call: { reader: JsonCallReader; text: string } | null = null
  private madeCall = false
  private readonly numbering = new CallNumbering()

  push(text: string): ParsedDelta {
    this.pending += text
    const out: ParsedDelta = { content: '', calls: [] }
    for (;;) {
      if (!this.call) {
        const at = this.pending.indexOf(OPEN)
        if (at < 0) {
          const keep = partialTagAt(this.pending, OPEN)
          out.content += this.visible(this.pending.slice(0, this.pending.length - keep))
          this.pending = this.pending.slice(this.pending.length - keep)
          return out
        }
        out.content += this.visible(this.pending.slice(0, at))
        this.pending = this.pending.slice(at + OPEN.length)
        this.call = { reader: new JsonCallReader({ kind: 'object' }, this.numbering), text: '' }
      }
      const end = this.pending.indexOf(CLOSE)
      if (end < 0) {
        // A partial closing tag is not fed to the reader: it could land inside a string.
        const keep = partialTagAt(this.pending, CLOSE)
        this.feed(out, this.pending.slice(0, this.pending.length - keep))
        this.pending = this.pending.slice(this.pending.length - keep)
        return out
      }
      // The whole block is here: checked before any of it goes out.
      this.feed(out, this.pending.slice(0, end), false)
      this.pending = this.pending.slice(end + CLOSE.length)
      this.close(out, CLOSE)
    }
  }

  finish(): ParsedDelta {
    const out: ParsedDelta = { content: '', calls: [] }
    const rest = this.pending
    this.pending = ''
    if (!this.call) {
      out.content = this.visible(rest)
      return out
    }
    this.feed(out, rest, false)
    this.close(out, '')
    return out
  }

  private feed(out: ParsedDelta, text: string, stream = true): void {
    if (text === '') return
    this.call!.text += text
    addDelta(out, this.call!.reader.push(text, stream))
  }

  private close(out: ParsedDelta, tag: string): void {
    const { reader, text } = this.call!
    this.call = null
    const ended = reader.end()
    if (ended === null) {
      out.content += OPEN + text + tag
      return
    }
    addDelta(out, ended)
    this.madeCall = true
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
