/**
 * Reads a Python list of calls, `[f(a=1, b="x"), g()]`, from a prefix of it: the calls begun so far,
 * each with its name and the keyword arguments already complete (a value is whole once the next `,`
 * or `)` follows it). Values are Python literals: strings, numbers, True/False/None, lists, tuples
 * and dicts, as vLLM's pythonic parser accepts them.
 */

export interface PythonCall {
  name: string
  args: [string, unknown][]
  closed: boolean
}

export interface PythonCalls {
  calls: PythonCall[]
  /** The list's `]` was read; `end` is the offset after it. */
  closed: boolean
  end: number
}

/** The text ended before the construct did. */
class Incomplete extends Error {}

const IDENT = /[A-Za-z_][A-Za-z0-9_.]*/y

class Reader {
  pos = 0
  constructor(private readonly s: string) {}

  ws(): void {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos]!)) this.pos++
  }

  peek(): string {
    this.ws()
    if (this.pos >= this.s.length) throw new Incomplete()
    return this.s[this.pos]!
  }

  expect(ch: string): void {
    if (this.peek() !== ch) throw new SyntaxError(`expected ${ch} at ${this.pos}`)
    this.pos++
  }

  ident(): string {
    this.peek()
    IDENT.lastIndex = this.pos
    const m = IDENT.exec(this.s)
    if (!m) throw new SyntaxError(`expected a name at ${this.pos}`)
    this.pos += m[0].length
    // A name that reaches the end of the text may go on.
    if (this.pos >= this.s.length) throw new Incomplete()
    return m[0]
  }

  value(): unknown {
    const ch = this.peek()
    if (ch === '"' || ch === "'") return this.string(ch)
    if (ch === '[' || ch === '(') return this.sequence(ch === '[' ? ']' : ')')
    if (ch === '{') return this.dict()
    const m = /^(?:-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|True|False|None)/.exec(this.s.slice(this.pos))
    if (!m) throw new SyntaxError(`expected a value at ${this.pos}`)
    this.pos += m[0].length
    if (this.pos >= this.s.length) throw new Incomplete()
    if (m[0] === 'True') return true
    if (m[0] === 'False') return false
    if (m[0] === 'None') return null
    return Number(m[0])
  }

  private string(quote: string): string {
    this.pos++
    let out = ''
    for (;;) {
      if (this.pos >= this.s.length) throw new Incomplete()
      const ch = this.s[this.pos++]!
      if (ch === quote) return out
      if (ch !== '\\') {
        out += ch
        continue
      }
      if (this.pos >= this.s.length) throw new Incomplete()
      const e = this.s[this.pos++]!
      if (e === 'u' || e === 'x') {
        const n = e === 'u' ? 4 : 2
        if (this.pos + n > this.s.length) throw new Incomplete()
        out += String.fromCharCode(parseInt(this.s.slice(this.pos, this.pos + n), 16))
        this.pos += n
      } else out += ({ n: '\n', t: '\t', r: '\r', '0': '\0' } as Record<string, string>)[e] ?? e
    }
  }

  private sequence(close: string): unknown[] {
    this.pos++
    const out: unknown[] = []
    for (;;) {
      if (this.peek() === close) {
        this.pos++
        return out
      }
      out.push(this.value())
      if (this.peek() === ',') this.pos++
      else if (this.peek() !== close) throw new SyntaxError(`expected , or ${close} at ${this.pos}`)
    }
  }

  private dict(): Record<string, unknown> {
    this.pos++
    const out: Record<string, unknown> = {}
    for (;;) {
      if (this.peek() === '}') {
        this.pos++
        return out
      }
      const key = this.value()
      this.expect(':')
      out[String(key)] = this.value()
      if (this.peek() === ',') this.pos++
      else if (this.peek() !== '}') throw new SyntaxError(`expected , or } at ${this.pos}`)
    }
  }
}

/** The calls of `text` (which starts at the list's `[`); a SyntaxError when it is not such a list. */
export function readPythonCalls(text: string): PythonCalls {
  const r = new Reader(text)
  const calls: PythonCall[] = []
  try {
    r.expect('[')
    for (;;) {
      if (r.peek() === ']') {
        r.pos++
        return { calls, closed: true, end: r.pos }
      }
      const name = r.ident()
      r.expect('(')
      const call: PythonCall = { name, args: [], closed: false }
      calls.push(call)
      for (;;) {
        if (r.peek() === ')') {
          r.pos++
          call.closed = true
          break
        }
        const key = r.ident()
        r.expect('=')
        const value = r.value()
        // Whole once what follows it is read.
        const next = r.peek()
        if (next !== ',' && next !== ')') throw new SyntaxError(`expected , or ) at ${r.pos}`)
        call.args.push([key, value])
        if (next === ',') r.pos++
      }
      if (r.peek() === ',') r.pos++
      else if (r.peek() !== ']') throw new SyntaxError(`expected , or ] at ${r.pos}`)
    }
  } catch (err) {
    if (err instanceof Incomplete) return { calls, closed: false, end: text.length }
    throw err
  }
}

/** JSON as Python's json.dumps writes it (", " and ": "), which is what vLLM returns. */
export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`)
      .join(', ')}}`
  }
  return JSON.stringify(value)
}
