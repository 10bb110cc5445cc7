/**
 * Mistral's tool calls (vLLM's mistral parser): text, then `[TOOL_CALLS]` and either a JSON array of
 * `{"name": ..., "arguments": {...}}` objects (tokenizers before v11, as Mistral 7B v0.3 and Nemo's
 * templates write it) or, from v11, `name[ARGS]{...}` per call, each after its own `[TOOL_CALLS]`.
 * `[TOOL_CALLS]` (and `[ARGS]`, `[CALL_ID]` from v11) are special tokens: the tokenizer keeps them in
 * the text of the requests this parser reads (keepsSpecialTokens, as vLLM's parser asks for
 * skip_special_tokens false). Where they were dropped all the same, a completion that begins with the
 * array (`[{`) is still read as calls. Ids are 9 alphanumerics, the only ones Mistral's templates
 * accept back in the history.
 */
import { endCall, JsonCallReader } from './json-call.ts'
import { addDelta, CallNumbering, mistralCallId, partialTagAt, type ParsedDelta, type ToolCallParser, type ToolCallStream } from './parser.ts'

const TOOL_CALLS = '[TOOL_CALLS]'

type State = 'start' | 'text' | 'afterTag' | 'array' | 'name'

class MistralStream implements ToolCallStream {
  private state: State = 'start'
  private pending = ''
  private reader: JsonCallReader | null = null
  private readonly numbering = new CallNumbering(mistralCallId)

  push(text: string): ParsedDelta {
    this.pending += text
    const out: ParsedDelta = { content: '', calls: [] }
    this.read(out, false)
    return out
  }

  finish(): ParsedDelta {
    const out: ParsedDelta = { content: '', calls: [] }
    this.read(out, true)
    if (this.reader) this.endCall(out)
    // A name with no arguments after it is dropped (vLLM does so); other held text is content.
    if (this.state !== 'name' && this.state !== 'array') out.content += this.pending
    this.pending = ''
    return out
  }

  private read(out: ParsedDelta, atEnd: boolean): void {
    for (;;) {
      if (this.reader) {
        addDelta(out, this.reader.push(this.pending))
        this.pending = ''
        if (!this.reader.complete) return
        this.pending = this.reader.rest
        this.endCall(out)
        continue
      }
      switch (this.state) {
        case 'start': {
          const t = this.pending.trimStart()
          if (/^\[\s*\{/.test(t)) {
            this.pending = t.slice(1)
            this.state = 'array'
            continue
          }
          if (!atEnd && (t === '' || /^\[\s*$/.test(t) || (t.length < TOOL_CALLS.length && TOOL_CALLS.startsWith(t)))) return
          this.state = 'text'
          continue
        }
        case 'text': {
          const at = this.pending.indexOf(TOOL_CALLS)
          if (at < 0) {
            const keep = atEnd ? 0 : partialTagAt(this.pending, TOOL_CALLS)
            out.content += this.pending.slice(0, this.pending.length - keep)
            this.pending = this.pending.slice(this.pending.length - keep)
            return
          }
          out.content += this.pending.slice(0, at)
          this.pending = this.pending.slice(at + TOOL_CALLS.length)
          this.state = 'afterTag'
          continue
        }
        case 'afterTag': {
          const t = this.pending.trimStart()
          if (t === '') return
          this.pending = t.startsWith('[') ? t.slice(1) : t
          this.state = t.startsWith('[') ? 'array' : 'name'
          continue
        }
        case 'array': {
          const t = this.pending.replace(/^[\s,]+/, '')
          this.pending = t
          if (t === '') return
          if (t.startsWith('{')) {
            this.reader = new JsonCallReader({ kind: 'object' }, this.numbering)
            continue
          }
          // `]` ends the array; anything after it is text again.
          this.pending = t.startsWith(']') ? t.slice(1) : t
          this.state = 'text'
          continue
        }
        case 'name': {
          // v11: the name, then `[ARGS]` (v13 puts `[CALL_ID]id` between), then the arguments object.
          const brace = this.pending.indexOf('{')
          if (brace < 0) return
          const name = this.pending.slice(0, brace).split('[')[0]!.trim()
          this.pending = this.pending.slice(brace)
          this.reader = new JsonCallReader({ kind: 'arguments', name }, this.numbering)
          this.state = 'text'
          continue
        }
      }
    }
  }

  private endCall(out: ParsedDelta): void {
    endCall(this.reader!, out)
    this.reader = null
  }
}

export const mistralParser: ToolCallParser = {
  name: 'mistral',
  keepsSpecialTokens: true,
  start: () => new MistralStream(),
}
