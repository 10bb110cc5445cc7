/**
 * The prefix cache through the real processes: greedy outputs are token for token those of a server
 * without it (--disable-radix-cache), for full and partial prefix matches, a match that ends inside a
 * chunked prefill (--max-prefill-tokens 24), eviction under a small --max-total-tokens, and an abort
 * during prefill; the tokens found in the cache are what the tree must hold (prefix_cache_hits); and
 * after its worker is killed the cache is empty and the outputs are still right.
 */
import t from 'tap'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import { parseExposition } from '../helpers/prometheus.ts'
import { startServer, type RunningServer } from '../../harness/server.ts'

const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 20 + ((i * 131 + seed * 17) % 900))
const SYS = ids(40, 1)
/** Each prompt, and the tokens the tree must have for it when they run in this order. */
const SEQUENCE: { prompt: number[]; cached: number }[] = [
  { prompt: [...SYS, ...ids(10, 2)], cached: 0 }, // caches 3 blocks: SYS + 8
  { prompt: [...SYS, ...ids(10, 3)], cached: 2 * BT }, // partial: SYS's 2 whole blocks
  { prompt: [...SYS, ...ids(10, 2)], cached: 3 * BT }, // the whole prompt but its last block's end
  { prompt: [...SYS, ...ids(30, 4)], cached: 2 * BT }, // a match ending inside the 24-token chunks
  { prompt: [...SYS, ...ids(30, 4)], cached: 4 * BT },
]
const COMMON = ['--max-prefill-tokens', '24', '--stats-interval', '0.1']

/** usage.prompt_tokens_details.cached_tokens of the last complete() (undefined: absent). */
let lastCached: number | undefined

/** The prompt's length as counted, and the greedy completion. */
async function complete(server: RunningServer, prompt: number[], signal?: AbortSignal): Promise<[number, string]> {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 12, temperature: 0, ignore_eos: true }),
    signal,
  })
  const body = (await res.json()) as { choices: { text: string }[]; usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } }
  t.equal(res.status, 200)
  lastCached = body.usage.prompt_tokens_details?.cached_tokens
  return [body.usage.prompt_tokens, body.choices[0]!.text]
}

async function metrics(server: RunningServer) {
  // Two report intervals: the schedulers' last counts have arrived.
  await new Promise((r) => setTimeout(r, 300))
  return parseExposition(await (await fetch(server.url + '/metrics')).text())
}

async function healthy(server: RunningServer, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if ((await fetch(server.url + '/health')).status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

const plain = await startServer({ args: [...COMMON, '--disable-radix-cache'] })
const expected: [number, string][] = []
for (const { prompt } of SEQUENCE) expected.push(await complete(plain, prompt))
t.equal(lastCached, undefined, 'no cached_tokens in usage with the cache off')
const distinct = [5, 6, 7, 8, 9].map((s) => [...ids(50, s * 10), ...SYS])
const expectedDistinct: [number, string][] = []
for (const p of distinct) expectedDistinct.push(await complete(plain, p))
t.equal((await metrics(plain)).sum('spanserve:prefix_cache_queries_total'), 0, 'no lookups with the cache off')
await plain.stop()

// 200 tokens of KV: one 62-token request and what it caches fit, three more prompts' blocks do not.
const server = await startServer({ args: [...COMMON, '--max-total-tokens', '200'] })
t.teardown(() => server.stop())

t.test("full and partial matches, one inside chunked prefill: the same greedy output, the tree's hits", async (t) => {
  for (let i = 0; i < SEQUENCE.length; i++) {
    t.same(await complete(server, SEQUENCE[i]!.prompt), expected[i], `prompt ${i}`)
    t.equal(lastCached, SEQUENCE[i]!.cached, `usage.prompt_tokens_details.cached_tokens of prompt ${i} is what the tree holds`)
  }
  // Streamed usage carries it too.
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: SEQUENCE[4]!.prompt, max_tokens: 4, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  })
  const events = (await res.text())
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)) as { usage?: { prompt_tokens_details?: { cached_tokens: number } } | null })
  t.equal(events.find((e) => e.usage)?.usage?.prompt_tokens_details?.cached_tokens, 4 * BT, 'in the streamed usage chunk')
  const m = await metrics(server)
  t.equal(m.sum('spanserve:prefix_cache_hits_total'), SEQUENCE.reduce((n, s) => n + s.cached, 0) + 4 * BT, 'tokens found in the cache are what the tree holds')
  t.equal(m.sum('spanserve:prefix_cache_queries_total'), SEQUENCE.reduce((n, s) => n + s.prompt.length, 0) + SEQUENCE[4]!.prompt.length)
  t.ok(m.sum('spanserve:prefix_cache_tokens') > 0)
})

t.test('eviction under a small --max-total-tokens: every request runs, outputs unchanged', async (t) => {
  for (let i = 0; i < distinct.length; i++) {
    t.same(await complete(server, distinct[i]!), expectedDistinct[i], `distinct prompt ${i}`)
    const cached = (await metrics(server)).sum('spanserve:prefix_cache_tokens')
    t.ok(cached <= 200, `the cache stays within the budget (${cached} tokens)`)
    const reports = ((await (await fetch(server.url + '/health')).json()) as { reports: { role: string; kv_blocks?: number }[] }).reports
    const blocks = reports.find((r) => r.role === 'worker')!.kv_blocks!
    t.ok(blocks * BT <= 200, `so does the worker's memory for it (${blocks} blocks)`)
  }
  // Concurrently, each needing the room the cache holds.
  t.same(await Promise.all(distinct.slice(0, 2).map((p) => complete(server, p))), expectedDistinct.slice(0, 2))
})

t.test('an abort during prefill leaves the tree consistent', async (t) => {
  const long = [...ids(60, 77), ...SYS]
  const ctl = new AbortController()
  const aborted = complete(server, long, ctl.signal).catch(() => null)
  await new Promise((r) => setTimeout(r, 5))
  ctl.abort()
  await aborted
  t.same(await complete(server, SEQUENCE[1]!.prompt), expected[1], 'a cached prompt still gives its output')
  t.same(await complete(server, distinct[4]!), expectedDistinct[4])
})

t.test('after the worker is killed the cache is empty and outputs are right', async (t) => {
  const pid = server.childPids()['worker-0-0']!
  process.kill(pid, 'SIGKILL')
  // Until the server has noticed the death, /health still answers for the old worker: wait for its replacement first.
  await server.waitForLog((l) => l.msg === 'process ready' && l.child === 'worker-0-0' && l.child_pid !== pid, 30_000)
  t.not(server.childPids()['worker-0-0'], pid, 'a new worker')
  t.ok(await healthy(server, 30_000), 'health is green again')
  const health = (await (await fetch(server.url + '/health')).json()) as { reports: { role: string; prefix_cache_tokens?: number; kv_blocks?: number }[] }
  await new Promise((r) => setTimeout(r, 300))
  const reports = ((await (await fetch(server.url + '/health')).json()) as typeof health).reports
  t.equal(reports.find((r) => r.role === 'scheduler')?.prefix_cache_tokens, 0, "the scheduler's tree is empty")
  t.equal(reports.find((r) => r.role === 'worker')?.kv_blocks, 0, 'the new worker holds no block')
  for (let i = 0; i < 3; i++) t.same(await complete(server, SEQUENCE[i]!.prompt), expected[i], `prompt ${i} after the restart`)
})
