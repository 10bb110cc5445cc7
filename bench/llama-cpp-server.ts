/**
 * The llama.cpp peer: llama.cpp (the build node-llama-cpp ships prebuilt) serving a GGUF of the
 * same weights, behind a minimal node:http handler that streams OpenAI completion chunks as SSE in
 * spanserve's format. node-llama-cpp has no llama-server; what llama-server does with `-np N -cb`
 * is done here the same way: one context with N sequences (slots), every sequence's pending tokens
 * (a new prompt's prefill beside the others' decode tokens) decoded together in one llama_decode per
 * step, a request taking a free slot as soon as one ends. Prints {"port":N} once listening.
 * Run: node --import tsx bench/llama-cpp-server.ts GGUF --parallel N --threads T (0: measure 1..cores, keep the fastest) --ctx TOKENS
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { availableParallelism } from 'node:os'
import { getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type Token } from 'node-llama-cpp'
import { llamaServerBatching } from './llama-cpp-batch.ts'
import { completionStream, readBody, servePeer } from './peer-server.ts'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { parallel: { type: 'string' }, threads: { type: 'string' }, ctx: { type: 'string' } } })
const parallel = Number(values.parallel ?? 16)
const ctxPerSeq = Number(values.ctx ?? 256)
const cores = availableParallelism()

// build 'never': the prebuilt binary or nothing; a build from source would download llama.cpp.
const llama = await getLlama({ gpu: false, build: 'never', maxThreads: cores, progressLogs: false, logLevel: LlamaLogLevel.warn })
const model = await llama.loadModel({ modelPath: positionals[0]!, gpuLayers: 0 })

function createContext(threads: number): Promise<LlamaContext> {
  return model.createContext({
    sequences: parallel,
    contextSize: ctxPerSeq,
    // llama.cpp's default micro-batch: a step's prefill tokens beyond it go in the next llama_decode.
    batchSize: 512,
    threads: { ideal: threads, min: threads },
    flashAttention: false,
    // F32 KV, as spanserve's ONNX graph keeps it: the same arithmetic, so the same greedy tokens.
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
    // Each step decodes every sequence that has a token pending: continuous batching.
    batching: { dispatchSchedule: 'nextCycle', itemPrioritizationStrategy: 'maximumParallelism' },
  })
}

/** ms per decode step with `batch` sequences decoding together (8-token prompts, 16 steps, after one warm pass). */
async function stepMs(_context: LlamaContext, seqs: LlamaContextSequence[], batch: number): Promise<number> {
  const run = async (): Promise<number> => {
    const t0 = performance.now()
    await Promise.all(
      seqs.slice(0, batch).map(async (s, k) => {
        let n = 0
        for await (const _ of s.evaluate(Array.from({ length: 8 }, (_, i) => (k + i) % 256) as Token[], { temperature: 0, yieldEogToken: true })) if (++n >= 16) break
        await s.clearHistory()
      }),
    )
    return (performance.now() - t0) / 16
  }
  await run()
  return run()
}

/**
 * llama-server's -t and -tb: the thread counts that decode fastest here, measured for 1..cores threads
 * at batch 1 (-t, one-token steps) and at batch `parallel` (-tb, every larger batch, prefill included).
 * On a 2-vCPU VM ggml's spin-waiting threads can lose to one thread; on larger batches or models, less so.
 */
async function calibrateThreads(): Promise<{ one: number; many: number; ms: Record<string, [number, number]> }> {
  const ms: Record<string, [number, number]> = {}
  for (let t = 1; t <= cores; t++) {
    const context = await createContext(t)
    llamaServerBatching(context, { one: t, many: t })
    const seqs = Array.from({ length: parallel }, () => context.getSequence())
    ms[t] = [await stepMs(context, seqs, 1), await stepMs(context, seqs, parallel)]
    await context.dispose()
  }
  const fastest = (i: 0 | 1): number => Number(Object.keys(ms).reduce((a, b) => (ms[b]![i] < ms[a]![i] ? b : a)))
  return { one: fastest(0), many: fastest(1), ms }
}

const given = Number(values.threads ?? 0)
const calibration = given > 0 ? null : await calibrateThreads()
const threads = calibration ? { one: calibration.one, many: calibration.many } : { one: given, many: given }
const context = await createContext(Math.max(threads.one, threads.many))
const llamaServerLike = llamaServerBatching(context, threads)
if (!llamaServerLike) threads.one = threads.many = Math.max(threads.one, threads.many)

/**
 * Free slots, lowest sequence id last, and requests waiting for one (more requests than slots wait, as
 * llama-server's do). The lowest free id is taken so that busy slots have consecutive ids: a batch's
 * micro-batches break at every gap (bench/llama-cpp-batch.ts).
 */
const slots = Array.from({ length: parallel }, () => context.getSequence())
// A fresh context hands out sequence ids 0, 1, 2, … in order.
const slotId = new Map(slots.map((s, i) => [s, i]))
const free = [...slots].reverse()
const waiting: ((s: LlamaContextSequence) => void)[] = []

function takeSlot(): Promise<LlamaContextSequence> {
  const s = free.pop()
  return s ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve))
}

async function giveSlot(s: LlamaContextSequence): Promise<void> {
  // A slot's KV cells are cleared before another request takes it: no prefix reuse, as spanserve's bench has none either.
  await s.clearHistory()
  const next = waiting.shift()
  if (next) return next(s)
  free.push(s)
  free.sort((a, b) => slotId.get(b)! - slotId.get(a)!)
}

async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req)
  if (body.temperature !== 0) throw new Error('only greedy (temperature 0) is served here')
  const prompt = (typeof body.prompt === 'string' ? model.tokenize(body.prompt) : (body.prompt ?? [])) as Token[]
  if (prompt.length === 0) throw new Error('empty prompt')
  const maxTokens = body.max_tokens ?? 16
  if (prompt.length + maxTokens > ctxPerSeq) throw new Error(`prompt ${prompt.length} + max_tokens ${maxTokens} is over the slot's ${ctxPerSeq} tokens`)
  const { head, send, end } = completionStream(res, 'cmpl-llamacpp', body)
  const slot = await takeSlot()
  let count = 0
  let released: Promise<void>
  try {
    head()
    let held: Token[] = []
    // temperature 0 is llama.cpp's greedy sampler; yieldEogToken keeps going past EOS, as ignore_eos asks.
    for await (const token of slot.evaluate(prompt, { temperature: 0, yieldEogToken: body.ignore_eos === true })) {
      count++
      // Specials render as '' (skip_special_tokens, as spanserve); a token ending inside a UTF-8 character waits for the next.
      held.push(token)
      const text = model.detokenize(held, false)
      if (!text.endsWith('\uFFFD')) {
        if (text) send(text, null)
        held = []
      }
      if (count >= maxTokens) break
    }
  } finally {
    // Cleared while the last chunk goes out, as llama-server answers before it frees the slot.
    released = giveSlot(slot).catch((err: Error) => void process.stderr.write(`slot not freed: ${err.message}\n`))
  }
  send('', count >= maxTokens ? 'length' : 'stop', { prompt_tokens: prompt.length, completion_tokens: count, total_tokens: prompt.length + count })
  end()
  await released
}

servePeer(
  completions,
  (port) => ({ port, slots: parallel, threads, calibration: calibration?.ms ?? null, llamaServerLike }),
  () => llama.dispose(),
)
