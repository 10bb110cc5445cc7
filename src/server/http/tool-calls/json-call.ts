/**
 * One tool call written as JSON, read as its text arrives: the name once it is whole, then the
 * arguments object's own text, fragment by fragment, as the model writes it (what lets a client show
 * a call forming; vLLM streams the arguments so). Two layouts: a call object
 * `{"name": "f", "arguments": {...}}` ("parameters" for Llama), or a bare arguments object whose
 * name came before it (Mistral's `[TOOL_CALLS]f{...}`). Arguments that are not an object or array
 * (a string, as some models write them) are given whole at the end.
 */
import { addDelta, type CallNumbering, type ParsedDelta } from './parser.ts'

const ARGUMENT_KEYS = new Set(['arguments', 'parameters'])

export type CallLayout = { kind: 'object' } | { kind: 'arguments'; name: string }

export class JsonCallReader {
  /** The call's text so far (up to the object's end once it is complete). */
  raw = ''
  /** The object closed; `rest` is what came after it in the last push. */
  complete = false
  rest = ''
  private i = 0
  private depth = 0
  private inString = false
  private escaped = false
  private stringStart = -1
  /** At depth 1 of a call object: the next string is a key. */
  private keyPosition = true
  private key: string | null = null
  private valuePending = false
  private name: string | null
  private argsStart = -1
  private argsEnd = -1
  private argsContainer = false
  private sent = 0
  private index = -1

  constructor(
    private readonly layout: CallLayout,
    private readonly numbering: CallNumbering,
  ) {
    this.name = layout.kind === 'arguments' ? layout.name : null
  }

  /** Whether the call's first piece went out (it cannot be taken back then). */
  get opened(): boolean {
    return this.index >= 0
  }

  /**
   * More text: the pieces that can be sent now. `stream` false: the text is only read (its block ends
   * with it, and end() checks the call before anything goes out).
   */
  push(text: string, stream = true): ParsedDelta {
    if (this.complete) {
      this.rest += text
      return { content: '', calls: [] }
    }
    this.raw += text
    this.scan()
    const out: ParsedDelta = { content: '', calls: [] }
    if (!stream) return out
    if (!this.opened && this.name !== null && this.argsStart >= 0 && this.argsContainer) this.open(out)
    if (this.opened && this.argsContainer) this.sendArguments(out, this.argsEnd >= 0 ? this.argsEnd : this.raw.length)
    return out
  }

  /**
   * The call's text ended (its object closed, or a closing tag, or the completion). null: nothing went
   * out and it is not a call (the caller shows the text as content).
   */
  end(): ParsedDelta | null {
    const out: ParsedDelta = { content: '', calls: [] }
    if (this.opened) {
      if (this.argsContainer) this.sendArguments(out, this.argsEnd >= 0 ? this.argsEnd : this.raw.length)
      return out
    }
    const whole = this.wholeCall()
    if (whole === null) return null
    this.name = whole.name
    this.open(out)
    out.calls.push({ index: this.index, arguments: whole.arguments })
    return out
  }

  /** A call that never streamed: read from its complete text. */
  private wholeCall(): { name: string; arguments: string } | null {
    let value: unknown
    try {
      value = JSON.parse(this.raw)
    } catch {
      // Mistral's newer layout: the arguments are given back even when they do not parse (vLLM does so).
      return this.layout.kind === 'arguments' && this.raw.trim() !== '' ? { name: this.layout.name, arguments: this.raw.trim() } : null
    }
    if (this.layout.kind === 'arguments') return { name: this.layout.name, arguments: this.argumentsText(value) }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
    const { name, arguments: args, parameters } = value as { name?: unknown; arguments?: unknown; parameters?: unknown }
    if (typeof name !== 'string' || name === '') return null
    return { name, arguments: this.argumentsText(args ?? parameters) }
  }

  private argumentsText(args: unknown): string {
    if (args === undefined || args === null) return '{}'
    if (typeof args === 'string') return args
    // As the model wrote it, so that a streamed call and a whole one read the same.
    if (this.argsContainer && this.argsEnd >= 0) return this.raw.slice(this.argsStart, this.argsEnd)
    return JSON.stringify(args)
  }

  private open(out: ParsedDelta): void {
    const first = this.numbering.open(this.name!)
    this.index = first.index
    out.calls.push(first)
  }

  private sendArguments(out: ParsedDelta, upTo: number): void {
    const fragment = this.raw.slice(this.argsStart + this.sent, upTo)
    if (fragment === '') return
    this.sent += fragment.length
    out.calls.push({ index: this.index, arguments: fragment })
  }

  /** Walks the new text: strings, nesting, the depth-1 keys and where the arguments value starts and ends. */
  private scan(): void {
    const s = this.raw
    const args = this.layout.kind === 'arguments'
    for (; this.i < s.length; this.i++) {
      const ch = s[this.i]!
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (ch === '\\') this.escaped = true
        else if (ch === '"') {
          this.inString = false
          if (!args && this.depth === 1) this.stringEnded(s.slice(this.stringStart, this.i + 1))
        }
        continue
      }
      if (ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r') continue
      if (!args && this.depth === 1 && this.valuePending) {
        this.valuePending = false
        if (this.key !== null && ARGUMENT_KEYS.has(this.key) && this.argsStart < 0) {
          this.argsStart = this.i
          this.argsContainer = ch === '{' || ch === '['
        }
      }
      if (ch === '"') {
        this.inString = true
        this.stringStart = this.i
      } else if (ch === '{' || ch === '[') {
        if (args && this.depth === 0) {
          this.argsStart = this.i
          this.argsContainer = true
        }
        this.depth++
      } else if (ch === '}' || ch === ']') {
        this.depth--
        if (this.argsContainer && this.argsEnd < 0 && this.depth === (args ? 0 : 1)) this.argsEnd = this.i + 1
        if (this.depth === 0) {
          this.complete = true
          this.rest = s.slice(this.i + 1)
          this.raw = s.slice(0, this.i + 1)
          return
        }
      } else if (!args && this.depth === 1 && ch === ':') {
        this.keyPosition = false
        this.valuePending = true
      } else if (!args && this.depth === 1 && ch === ',') {
        this.keyPosition = true
        this.key = null
      }
    }
  }

  private stringEnded(literal: string): void {
    let value: string
    try {
      value = JSON.parse(literal) as string
    } catch {
      return
    }
    if (this.keyPosition) this.key = value
    else if (this.key === 'name' && this.name === null && value !== '') this.name = value
  }
}

/** A call's text ended: its last delta goes into `out`, or, when it was no call after all, its raw text as content. */
export function endCall(reader: JsonCallReader, out: ParsedDelta): void {
  const ended = reader.end()
  if (ended === null) out.content += reader.raw
  else addDelta(out, ended)
}
