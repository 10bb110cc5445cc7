/**
 * Llama 3.x's JSON tool calls (vLLM's llama3_json): `<|python_tag|>` optional, then
 * `{"name": "f", "parameters": {...}}` objects ("arguments" too), separated by `;`. As vLLM reads a
 * stream: a completion is calls only when it begins with one (the tag or `{`); otherwise it is all
 * text. The tag is a special token that the detokenizer usually drops, so `{` alone suffices.
 */
import { endCall, JsonCallReader } from './json-call.ts'
import { addDelta, CallNumbering, type ParsedDelta, type ToolCallParser, type ToolCallStream } from './parser.ts'

const PYTHON_TAG = '<|python_tag|>'

class Llama3JsonStream implements ToolCallStream {
  private mode: 'undecided' | 'text' | 'calls' = 'undecided'
  private pending = ''
  private reader: JsonCallReader | null = null
  private readonly numbering = new CallNumbering()

  push(text: string): ParsedDelta {
    this.pending += text
    const out: ParsedDelta = { content: '', calls: [] }
    if (this.mode === 'undecided') {
      const t = this.pending.trimStart()
      if (t === '' || (t.length < PYTHON_TAG.length && PYTHON_TAG.startsWith(t))) return out
      this.mode = t.startsWith(PYTHON_TAG) || t.startsWith('{') ? 'calls' : 'text'
    }
    if (this.mode === 'text') {
      out.content = this.pending
      this.pending = ''
      return out
    }
    this.readCalls(out)
    return out
  }

  finish(): ParsedDelta {
    const out: ParsedDelta = { content: '', calls: [] }
    if (this.mode !== 'calls') {
      out.content = this.pending
      this.pending = ''
      return out
    }
    this.readCalls(out)
    if (this.reader) this.endCall(out)
    // A partial tag or stray text after the calls.
    if (this.pending.trim() !== '') out.content += this.pending
    this.pending = ''
    return out
  }

  private readCalls(out: ParsedDelta): void {
    for (;;) {
      if (this.reader) {
        addDelta(out, this.reader.push(this.pending))
        this.pending = ''
        if (!this.reader.complete) return
        this.pending = this.reader.rest
        this.endCall(out)
        continue
      }
      // Between calls: separators and the tag.
      let t = this.pending.replace(/^[\s;]+/, '')
      while (t.startsWith(PYTHON_TAG)) t = t.slice(PYTHON_TAG.length).replace(/^[\s;]+/, '')
      this.pending = t
      if (t === '' || (t.length < PYTHON_TAG.length && PYTHON_TAG.startsWith(t))) return
      if (t.startsWith('{')) {
        this.reader = new JsonCallReader({ kind: 'object' }, this.numbering)
        continue
      }
      // Text after the calls: content.
      out.content += t
      this.pending = ''
      return
    }
  }

  private endCall(out: ParsedDelta): void {
    endCall(this.reader!, out)
    this.reader = null
  }
}

export const llama3JsonParser: ToolCallParser = {
  name: 'llama3_json',
  start: () => new Llama3JsonStream(),
}
