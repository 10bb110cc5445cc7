/**
 * The transformers.js baseline: @huggingface/transformers loading the same model directory from
 * disk (no remote models), in this process, behind a minimal node:http handler that streams OpenAI
 * completion chunks as SSE in spanserve's format. Each request is its own model.generate() call:
 * transformers.js has no batching across requests, which is what a user of it would get.
 * Prints {"port":N} once listening. Run: node --import tsx bench/transformers-js-server.ts MODEL_DIR
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { basename, dirname, resolve } from 'node:path'
import { completionStream, readBody, servePeer } from './peer-server.ts'
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

async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req)
  if (body.temperature !== 0) throw new Error('only greedy (temperature 0) is served here')
  const ids = typeof body.prompt === 'string' ? (tokenizer.encode(body.prompt, { add_special_tokens: false }) as number[]) : (body.prompt ?? [])
  const maxTokens = body.max_tokens ?? 16
  const { head, send, end } = completionStream(res, 'cmpl-tjs', body)
  head()
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
  end()
}

servePeer(completions, (port) => ({ port }))
