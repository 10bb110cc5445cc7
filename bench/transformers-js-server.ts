/**
 * The transformers.js baseline: @huggingface/transformers loading the same model directory from
 * disk (no remote models), in this process, behind a minimal node:http handler that streams OpenAI
 * completion chunks as SSE in spanserve's format. Each request is its own model.generate() call:
 * transformers.js has no batching across requests, which is what a user of it would get.
 * Prints {"port":N} once listening. Run: node --import tsx bench/transformers-js-server.ts MODEL_DIR
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { basename, dirname, resolve } from 'node:path'
import { AutoModelForCausalLM, AutoTokenizer, BaseStreamer, env, Tensor } from '@huggingface/transformers'

const modelDir = resolve(process.argv[2] ?? '')
env.allowRemoteModels = false
env.allowLocalModels = true
env.localModelPath = `${dirname(modelDir)}/`
const name = basename(modelDir)
const tokenizer = await AutoTokenizer.from_pretrained(name)
const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32', device: 'cpu' })

/** Sends each new token's text as it is generated, holding back an incomplete UTF-8 sequence. */
class SseStreamer extends BaseStreamer {
  private promptSeen = false
  private readonly ids: number[] = []
  private sent = ''

  constructor(private readonly onText: (text: string) => void) {
    super()
  }

  override put(value: bigint[][]): void {
    // generate() first puts the prompt, then one token per step.
    if (!this.promptSeen) {
      this.promptSeen = true
      return
    }
    this.ids.push(Number(value[0]![0]!))
    const text = tokenizer.decode(this.ids, { skip_special_tokens: true })
    if (text.endsWith('\uFFFD') || text.length <= this.sent.length) return
    this.onText(text.slice(this.sent.length))
    this.sent = text
  }

  override end(): void {}

  get count(): number {
    return this.ids.length
  }
}

interface Body {
  model?: string
  prompt?: string | number[]
  max_tokens?: number
  temperature?: number
  ignore_eos?: boolean
}

async function readJson(req: IncomingMessage): Promise<Body> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Body
}

async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req)
  if (body.temperature !== 0) throw new Error('only greedy (temperature 0) is served here')
  const ids = typeof body.prompt === 'string' ? (tokenizer.encode(body.prompt, { add_special_tokens: false }) as number[]) : (body.prompt ?? [])
  const maxTokens = body.max_tokens ?? 16
  const base = { id: `cmpl-tjs-${Date.now()}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: body.model ?? 'default' }
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
  const send = (text: string, finish: string | null, usage?: object): void =>
    void res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], ...(usage ? { usage } : {}) })}\n\n`)
  const streamer = new SseStreamer((text) => send(text, null))
  const inputIds = new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length])
  const mask = new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length])
  await model.generate({
    input_ids: inputIds,
    attention_mask: mask,
    max_new_tokens: maxTokens,
    do_sample: false,
    // ignore_eos as spanserve does it: EOS may be generated, it just does not stop the sequence.
    ...(body.ignore_eos ? { eos_token_id: null } : {}),
    streamer,
  } as unknown as Parameters<typeof model.generate>[0])
  const finish = streamer.count >= maxTokens ? 'length' : 'stop'
  send('', finish, { prompt_tokens: ids.length, completion_tokens: streamer.count, total_tokens: ids.length + streamer.count })
  res.end('data: [DONE]\n\n')
}

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
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`))
process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
  process.exit(0)
})
