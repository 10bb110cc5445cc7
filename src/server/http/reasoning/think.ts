/**
 * `<think>…</think>` reasoning, as Qwen3 and DeepSeek-R1 write it. The two differ where the block
 * opens: Qwen3 (up to the 2507 releases) writes `<think>` itself, so a completion that does not begin
 * with it has no reasoning; DeepSeek-R1's template opens the block in the prompt, so the completion is
 * reasoning from its first token until `</think>` (all of it when the model never closes it), with a
 * `<think>` of its own skipped. vLLM's qwen3 and deepseek_r1 parsers read them so.
 */
import { partialTagAt } from '../tool-calls/parser.ts'
import type { ReasoningDelta, ReasoningParser, ReasoningStream } from './parser.ts'

const OPEN = '<think>'
const CLOSE = '</think>'

class ThinkStream implements ReasoningStream {
  private state: 'start' | 'reasoning' | 'content' = 'start'
  private pending = ''

  constructor(private readonly opensInPrompt: boolean) {}

  push(text: string): ReasoningDelta {
    this.pending += text
    return this.read(false)
  }

  finish(): ReasoningDelta {
    return this.read(true)
  }

  private read(atEnd: boolean): ReasoningDelta {
    const out: ReasoningDelta = { reasoning: '', content: '' }
    if (this.state === 'start') {
      const t = this.pending.trimStart()
      if (t.startsWith(OPEN)) {
        this.state = 'reasoning'
        this.pending = t.slice(OPEN.length)
      } else if (!atEnd && OPEN.startsWith(t)) return out
      else this.state = this.opensInPrompt ? 'reasoning' : 'content'
    }
    if (this.state === 'reasoning') {
      const at = this.pending.indexOf(CLOSE)
      if (at < 0) {
        const keep = atEnd ? 0 : partialTagAt(this.pending, CLOSE)
        out.reasoning = this.pending.slice(0, this.pending.length - keep)
        this.pending = this.pending.slice(this.pending.length - keep)
        return out
      }
      out.reasoning = this.pending.slice(0, at)
      this.pending = this.pending.slice(at + CLOSE.length)
      this.state = 'content'
    }
    out.content = this.pending
    this.pending = ''
    return out
  }
}

export const qwen3ReasoningParser: ReasoningParser = { name: 'qwen3', start: () => new ThinkStream(false) }
export const deepseekR1ReasoningParser: ReasoningParser = { name: 'deepseek_r1', start: () => new ThinkStream(true) }
