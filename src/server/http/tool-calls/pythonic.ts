/**
 * Pythonic tool calls (vLLM's pythonic parser), as Llama 3.2 and Llama 4 write them:
 * `[get_weather(city="Paris"), get_time()]`, Llama 4 between `<|python_start|>` and `<|python_end|>`.
 * As vLLM reads a stream: a completion is calls only when it begins with the list; otherwise all
 * text. The arguments (Python literals) come back as JSON and stream one keyword argument at a time,
 * as each is complete.
 */
import { CallNumbering, type ParsedDelta, type ToolCallParser, type ToolCallStream } from './parser.ts'
import { pythonJson, readPythonCalls, type PythonCalls } from './python-calls.ts'

const START = '<|python_start|>'
const END = '<|python_end|>'
/** The start of a list of calls: `[` and a name then `(`. */
const BEGINS = /^\[\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(/
const MAY_BEGIN = /^\[\s*[A-Za-z_0-9.]*\s*$/

class PythonicStream implements ToolCallStream {
  private mode: 'undecided' | 'text' | 'calls' | 'after' = 'undecided'
  private text = ''
  /** Per call: its index and the arguments text sent. */
  private readonly sent: { index: number; args: string }[] = []
  private readonly numbering = new CallNumbering()

  push(delta: string): ParsedDelta {
    this.text += delta
    return this.read(false)
  }

  finish(): ParsedDelta {
    return this.read(true)
  }

  private read(atEnd: boolean): ParsedDelta {
    const out: ParsedDelta = { content: '', calls: [] }
    if (this.mode === 'undecided') {
      let t = this.text.trimStart()
      if (t.startsWith(START)) t = t.slice(START.length).trimStart()
      if (BEGINS.test(t)) {
        this.mode = 'calls'
        this.text = t
      } else if (!atEnd && (t === '' || MAY_BEGIN.test(t) || START.startsWith(t))) return out
      else this.mode = 'text'
    }
    if (this.mode === 'text' || this.mode === 'after') {
      const rest = this.mode === 'after' ? this.text.replace(END, '') : this.text
      out.content = this.mode === 'after' && rest.trim() === '' ? '' : rest
      this.text = ''
      return out
    }
    let parsed: PythonCalls
    try {
      parsed = readPythonCalls(this.text)
    } catch {
      // Not a list of calls after all: text, unless calls went out already (they cannot be taken back).
      if (this.sent.length === 0) {
        out.content = this.text
        this.text = ''
        this.mode = 'text'
      }
      return out
    }
    parsed.calls.forEach((call, i) => {
      let s = this.sent[i]
      if (!s) {
        const first = this.numbering.open(call.name)
        s = { index: first.index, args: '' }
        this.sent[i] = s
        out.calls.push(first)
      }
      // The arguments' JSON grows as each keyword argument completes; the brace closes with the call.
      const body = call.args.map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`).join(', ')
      const closed = call.closed || atEnd
      const target = call.args.length === 0 ? (closed ? '{}' : '') : `{${body}${closed ? '}' : ''}`
      const fragment = target.slice(s.args.length)
      if (fragment !== '') {
        s.args += fragment
        out.calls.push({ index: s.index, arguments: fragment })
      }
    })
    if (parsed.closed) {
      this.mode = 'after'
      this.text = this.text.slice(parsed.end)
      const rest = this.text.replace(END, '')
      if (rest.trim() !== '') out.content += rest
      this.text = ''
    }
    return out
  }
}

export const pythonicParser: ToolCallParser = {
  name: 'pythonic',
  start: () => new PythonicStream(),
}
