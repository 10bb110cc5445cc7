/**
 * What the bench's in-process peers (transformers-js-server.ts, llama-cpp-server.ts) share: a
 * node:http server with one route, POST /v1/completions, that streams OpenAI completion chunks as
 * SSE in spanserve's shape; {"port":N,…} printed once listening; SIGTERM ends it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** The completion fields the load client sends. */
export interface PeerBody {
  model?: string
  prompt?: string | number[]
  max_tokens?: number
  temperature?: number
  ignore_eos?: boolean
}

export async function readBody(req: IncomingMessage): Promise<PeerBody> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as PeerBody
}

/** One completion's stream: head() starts it, send() writes a chunk, end() the [DONE]. */
export function completionStream(res: ServerResponse, idPrefix: string, body: PeerBody) {
  const base = { id: `${idPrefix}-${Date.now()}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: body.model ?? 'default' }
  return {
    head: (): void => void res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' }),
    send: (text: string, finish: string | null, usage?: object): void =>
      void res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], ...(usage ? { usage } : {}) })}\n\n`),
    end: (): void => void res.end('data: [DONE]\n\n'),
  }
}

/** Serves `completions`; a request it throws on gets a 400 with the message. */
export function servePeer(completions: (req: IncomingMessage, res: ServerResponse) => Promise<void>, readyLine: (port: number) => object, stop: () => Promise<void> | void = () => {}): void {
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/completions') {
      completions(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { message: err.message } }))
      })
      return
    }
    res.writeHead(404).end()
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify(readyLine((server.address() as AddressInfo).port))}\n`))
  process.on('SIGTERM', () => {
    server.close()
    server.closeAllConnections()
    void Promise.resolve(stop()).finally(() => process.exit(0))
  })
}
