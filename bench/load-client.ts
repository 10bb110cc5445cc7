/**
 * The load client: closed-loop streaming requests against an OpenAI-compatible /v1/completions
 * (stream: true, temperature 0, ignore_eos, fixed max_tokens), N requests in flight at a time. It
 * timestamps every SSE chunk as it arrives; time to first token is the first chunk carrying text.
 */
import { Agent, request as httpRequest } from 'node:http'
import { summarise, type LevelResult, type RequestSample } from './stats.ts'

export interface LoadTarget {
  /** http://HOST:PORT */
  url: string
  model: string
}

export interface CompletionResult extends RequestSample {
  text: string
  finishReason: string | null
}

export class LoadClient {
  // One keep-alive pool, large enough that no request waits for a socket.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1024 })

  constructor(readonly target: LoadTarget) {}

  /** One streamed completion, measured from the moment it is sent. */
  complete(prompt: readonly number[], maxTokens: number): Promise<CompletionResult> {
    // include_usage: the usage chunk OpenAI sends last (the finish chunk carries none).
    const body = JSON.stringify({ model: this.target.model, prompt, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true }, temperature: 0, ignore_eos: true })
    const url = new URL('/v1/completions', this.target.url)
    return new Promise((resolve, reject) => {
      const t0 = performance.now()
      const chunkTimes: number[] = []
      let text = ''
      let usageTokens: number | null = null
      let finishReason: string | null = null
      let buf = ''
      const req = httpRequest(url, { method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        if (res.statusCode !== 200) {
          let err = ''
          res.on('data', (c: Buffer) => (err += c.toString('utf8')))
          res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${err.slice(0, 500)}`)))
          return
        }
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          const now = performance.now()
          buf += chunk
          let sep: number
          while ((sep = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, sep)
            buf = buf.slice(sep + 2)
            if (!event.startsWith('data: ')) continue
            const data = event.slice(6)
            if (data === '[DONE]') continue
            const obj = JSON.parse(data) as { choices?: { text?: string; finish_reason?: string | null }[]; usage?: { completion_tokens?: number }; error?: { message: string } }
            if (obj.error) return reject(new Error(`stream error: ${obj.error.message}`))
            const choice = obj.choices?.[0]
            if (choice?.text) {
              text += choice.text
              chunkTimes.push(now)
            }
            if (choice?.finish_reason) finishReason = choice.finish_reason
            if (obj.usage?.completion_tokens !== undefined) usageTokens = obj.usage.completion_tokens
          }
        })
        res.on('end', () => {
          const end = performance.now()
          if (chunkTimes.length === 0) return reject(new Error('the stream carried no text'))
          const itlMs: number[] = []
          for (let i = 1; i < chunkTimes.length; i++) itlMs.push(chunkTimes[i]! - chunkTimes[i - 1]!)
          resolve({ ttftMs: chunkTimes[0]! - t0, e2eMs: end - t0, tokens: usageTokens ?? chunkTimes.length, itlMs, text, finishReason })
        })
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  /**
   * `total` requests, `concurrency` at a time: each slot sends its next request as soon as its last
   * one ends. Prompts are taken round-robin from `from` on.
   */
  async level(prompts: readonly number[][], maxTokens: number, concurrency: number, total: number, from = 0): Promise<LevelResult> {
    const samples: RequestSample[] = []
    let next = 0
    const t0 = performance.now()
    const slot = async (): Promise<void> => {
      while (next < total) {
        const i = next++
        const r = await this.complete(prompts[(from + i) % prompts.length]!, maxTokens)
        if (r.tokens !== maxTokens) throw new Error(`asked for ${maxTokens} tokens, got ${r.tokens} (finish_reason ${r.finishReason})`)
        samples.push(r)
      }
    }
    // Every slot ends before a failure is thrown: no request of this level is left running into the next.
    const ended = await Promise.allSettled(Array.from({ length: Math.min(concurrency, total) }, slot))
    const failed = ended.find((e) => e.status === 'rejected')
    if (failed) throw failed.reason
    return summarise(concurrency, samples, performance.now() - t0)
  }

  close(): void {
    this.agent.destroy()
  }
}
