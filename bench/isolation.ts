/**
 * npm run bench -- --isolation: what one client or input costs the others (issue 27), each a ratio
 * from one run on one server (the embedded model):
 *
 * - constraints: plain streams' ITL p99 while one client sends distinct costly constraints back to
 *   back, over the same streams alone (target <= 1.5);
 * - hog: a well-behaved client's TTFT p99 while another sends n=128 requests, over its TTFT p99
 *   alone (target <= 2), and what the hog gets meanwhile;
 * - huge prompt: plain streams' ITL p99 while 4 MB prompts arrive, over the same alone (<= 1.5);
 * - memory: each process's resident memory after an n=128 burst and 30 s idle, over its value
 *   after warm-up (<= 1.2).
 *
 * Prints a JSON summary and writes it to bench/results/isolation-<date>.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, ROOT } from '../harness/server.ts'
import { killTracked, track } from './child-lines.ts'
import { percentile } from './stats.ts'
import type { IsolationPart } from './options.ts'

const say = (line: string): void => void process.stderr.write(`${line}\n`)

interface Stream {
  ttftMs: number
  itlMs: number[]
  tokens: number
  status: number
}

/** One request, streamed; every chunk timed. */
async function stream(url: string, body: object, client: string): Promise<Stream> {
  const t0 = performance.now()
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-spanserve-client': client },
    body: JSON.stringify({ model: 'default', stream: true, temperature: 0, ignore_eos: true, ...body }),
  })
  if (res.status !== 200 || !res.body) {
    await res.text()
    return { ttftMs: NaN, itlMs: [], tokens: 0, status: res.status }
  }
  const times: number[] = []
  const decoder = new TextDecoder()
  let buf = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now()
    buf += decoder.decode(chunk, { stream: true })
    let sep: number
    while ((sep = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, sep)
      buf = buf.slice(sep + 2)
      if (event.startsWith('data: {') && event.includes('"text":"') && !event.includes('"text":""')) times.push(now)
    }
  }
  const itlMs = times.slice(1).map((t, i) => t - times[i]!)
  return { ttftMs: times.length > 0 ? times[0]! - t0 : NaN, itlMs, tokens: times.length, status: 200 }
}

/** `clients` closed loops of plain streams until `stop()` resolves; their gaps between tokens. */
async function plainStreams(url: string, clients: number, until: Promise<unknown>): Promise<{ itl: number[]; ttft: number[]; requests: number }> {
  let done = false
  void until.then(() => (done = true))
  const itl: number[] = []
  const ttft: number[] = []
  let requests = 0
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      while (!done) {
        const s = await stream(url, { prompt: `Once upon a time, client ${c} said`, max_tokens: 64 }, `plain-${c}`)
        itl.push(...s.itlMs)
        ttft.push(s.ttftMs)
        requests++
      }
    }),
  )
  return { itl, ttft, requests }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Distinct constraints, each new to the server and costly to compile (the kinds). */
function costlyConstraint(i: number): object {
  switch (i % 3) {
    case 0:
      return { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'string', maxLength: 2000 + i } } } }
    case 1:
      return { guided_choice: Array.from({ length: 1500 }, (_, k) => `value-${i}-${k}`) }
    default:
      return { guided_regex: `((ab|cd|ef){${40 + (i % 20)}}){8,12}` }
  }
}

/** Plain streams' ITL p99 beside a disturbance over the same alone (target: at most 1.5). */
function itlRatio(alone: number[], beside: number[]): { aloneItlP99: number; besideItlP99: number; ratio: number; target: number } {
  const a = percentile(alone, 99)
  const b = percentile(beside, 99)
  return { aloneItlP99: a, besideItlP99: b, ratio: b / a, target: 1.5 }
}

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024
}

export async function runIsolation(parts: readonly IsolationPart[]): Promise<void> {
  const server = await startServer({ args: ['--grammar-compile-timeout', '5'], timeoutMs: 180_000 })
  track(server.proc)
  const url = server.url
  const result: Record<string, unknown> = { date: new Date().toISOString(), model: 'default' }
  try {
    // Warm-up: the model, the tokenizer, a grammar thread, a few streams.
    await Promise.all(Array.from({ length: 4 }, (_, i) => stream(url, { prompt: `warm ${i}`, max_tokens: 32 }, 'warm')))
    await stream(url, { prompt: 'warm', max_tokens: 8, guided_regex: '[a-z]+' }, 'warm')
    await sleep(3000)
    const pids = server.childPids()
    const warm = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssMb(pid)]))

    const WINDOW = 20_000
    // 1. Costly constraints.
    if (parts.includes('constraints')) {
      say('constraints: plain streams alone')
      const alone1 = await plainStreams(url, 4, sleep(WINDOW))
      say('constraints: plain streams beside a client sending distinct costly constraints')
      let sent = 0
      const refused: Record<string, number> = {}
      const attacker = (async (until: number) => {
        while (performance.now() < until) {
          const r = await stream(url, { prompt: 'x', max_tokens: 4, ...costlyConstraint(sent++) }, 'attacker')
          refused[r.status] = (refused[r.status] ?? 0) + 1
        }
      })(performance.now() + WINDOW)
      const beside1 = await plainStreams(url, 4, attacker)
      result.constraints = { ...itlRatio(alone1.itl, beside1.itl), attackerRequests: sent, attackerStatuses: refused }
      say(JSON.stringify(result.constraints))
    }

    // 2. A hog client's n=128 against a well-behaved client's short requests.
    if (parts.includes('hog')) {
      const polite = async (n: number): Promise<number[]> => {
        const ttft: number[] = []
        for (let i = 0; i < n; i++) {
          ttft.push((await stream(url, { prompt: `Polite question ${i}`, max_tokens: 4 }, 'polite')).ttftMs)
          await sleep(250)
        }
        return ttft
      }
      say('hog: the polite client alone')
      const politeAlone = await polite(60)
      say('hog: the polite client beside n=128 requests')
      let hogDone = false
      let hogTokens = 0
      const hogStart = performance.now()
      const hog = (async () => {
        while (!hogDone) {
          const res = await fetch(`${url}/v1/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-spanserve-client': 'hog' },
            body: JSON.stringify({ model: 'default', prompt: 'Once', max_tokens: 300, n: 128, ignore_eos: true }),
          })
          const body = (await res.json()) as { usage?: { completion_tokens: number } }
          hogTokens += body.usage?.completion_tokens ?? 0
        }
      })()
      await sleep(1500)
      const politeBeside = await polite(60)
      hogDone = true
      await hog
      const hogSeconds = (performance.now() - hogStart) / 1000
      result.hog = {
        aloneTtftP99: percentile(politeAlone, 99),
        besideTtftP99: percentile(politeBeside, 99),
        ratio: percentile(politeBeside, 99) / percentile(politeAlone, 99),
        target: 2,
        hogTokensPerSec: hogTokens / hogSeconds,
      }
      say(JSON.stringify(result.hog))
    }

    // 3. Huge prompts beside plain streams: one at a time, a second apart.
    if (parts.includes('huge')) {
      say('huge prompt: plain streams alone')
      const alone3 = await plainStreams(url, 4, sleep(WINDOW))
      say('huge prompt: plain streams beside 4 MB prompts')
      const huge = 'lorem ipsum dolor sit amet '.repeat(Math.ceil((4 * 2 ** 20 - 64 * 1024) / 27)).slice(0, 4 * 2 ** 20 - 64 * 1024)
      const hugeStatuses: Record<string, number> = {}
      const sender = (async (until: number) => {
        while (performance.now() < until) {
          const res = await fetch(`${url}/v1/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-spanserve-client': 'huge' },
            body: JSON.stringify({ model: 'default', prompt: huge, max_tokens: 4 }),
          })
          await res.text()
          hugeStatuses[res.status] = (hugeStatuses[res.status] ?? 0) + 1
          await sleep(1000)
        }
      })(performance.now() + WINDOW)
      const beside3 = await plainStreams(url, 4, sender)
      result.hugePrompt = { ...itlRatio(alone3.itl, beside3.itl), hugeStatuses }
      say(JSON.stringify(result.hugePrompt))
    }

    // 4. Memory after an n=128 burst and 30 s idle.
    if (parts.includes('memory')) {
      say('memory: an n=128 burst, then 30 s idle')
      await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', prompt: 'Once', max_tokens: 300, n: 128, ignore_eos: true }),
      }).then((r) => r.json())
      const burst = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssMb(pid)]))
      await sleep(30_000)
      const idle = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssMb(pid)]))
      result.memory = Object.fromEntries(Object.keys(pids).map((k) => [k, { warmMb: warm[k], burstMb: burst[k], idleMb: idle[k], ratio: idle[k]! / warm[k]!, target: 1.2 }]))
      say(JSON.stringify(result.memory))
    }
  } finally {
    await server.stop()
    killTracked()
  }
  const dir = join(ROOT, 'bench/results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `isolation-${String(result.date).replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  process.stdout.write(JSON.stringify(result, null, 2) + '\n')
  say(`written: ${file}`)
}
