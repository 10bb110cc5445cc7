/**
 * Load through the real processes with tracing on: 2,000 requests at concurrency 64, streamed and
 * plain, completions and chat, prompts and max_tokens of random length. Nothing is lost or
 * duplicated, nothing is a 5xx, /metrics agrees with what was sent (token totals exact), every
 * process lets go of every request, memory settles back, and every request's trace arrives whole.
 */
import t from 'tap'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { parseExposition } from '../helpers/prometheus.ts'
import { startServer } from '../../harness/server.ts'
import { KV_BLOCK_TOKENS } from '../../src/ipc/kv-blocks.ts'
import { PRESETS } from '../../src/model/presets.ts'

const TOTAL = 2000
const CONCURRENCY = 64
const WARMUP = 64

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ args: ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint, '--stats-interval', '0.25', '--max-batch-size', '64'] })
t.teardown(() => server.stop())

let seed = 7
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32
const WORDS = 'the little girl walked to the old house near the forest and the king said that it was a cold morning'.split(' ')

interface Outcome {
  status: number
  id: string | null
  traceId: string | null
  promptTokens: number
  completionTokens: number
  finish: string | null
  complete: boolean
}

async function one(i: number): Promise<Outcome> {
  const stream = rand() < 0.5
  const chat = rand() < 0.2
  const words = Array.from({ length: 1 + Math.floor(rand() * 120) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ')
  const maxTokens = 1 + Math.floor(rand() * 40)
  const body = chat
    ? { model: 'default', messages: [{ role: 'user', content: words }], max_tokens: maxTokens, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) }
    : { model: 'default', prompt: words, max_tokens: maxTokens, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) }
  const res = await fetch(server.url + (chat ? '/v1/chat/completions' : '/v1/completions'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': `load-${i}` },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  const traceId = res.headers.get('traceparent')?.split('-')[1] ?? null
  if (res.status !== 200) return { status: res.status, id: null, traceId, promptTokens: 0, completionTokens: 0, finish: null, complete: false }
  if (!stream) {
    const j = JSON.parse(text) as { id: string; choices: { finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } }
    return { status: 200, id: j.id, traceId, promptTokens: j.usage.prompt_tokens, completionTokens: j.usage.completion_tokens, finish: j.choices[0]!.finish_reason, complete: true }
  }
  const events = text.split('\n\n').filter((e) => e.startsWith('data: '))
  // The include_usage chunk (empty choices), after the one with the finish reason.
  const last = JSON.parse(events.at(-2)!.slice(6)) as { id: string; usage?: { prompt_tokens: number; completion_tokens: number } }
  const finished = JSON.parse(events.at(-3)!.slice(6)) as { choices: { finish_reason: string | null }[] }
  return {
    status: 200,
    id: last.id,
    traceId,
    promptTokens: last.usage?.prompt_tokens ?? -1,
    completionTokens: last.usage?.completion_tokens ?? -1,
    finish: finished.choices[0]?.finish_reason ?? null,
    complete: events.at(-1) === 'data: [DONE]' && new Set(events.slice(0, -1).map((e) => (JSON.parse(e.slice(6)) as { id: string }).id)).size === 1,
  }
}

async function run(count: number, offset: number): Promise<Outcome[]> {
  const out: Outcome[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        const i = next++
        out[i] = await one(offset + i)
      }
    }),
  )
  return out
}

interface Report {
  role: string
  dp_rank: number
  tp_rank: number
  live_requests: number
  trace_contexts_open: number
  rss_bytes: number
  heap_used_bytes: number
  external_bytes: number
  /** A worker rank's KV blocks: its sequences' and the prefix cache's. */
  kv_blocks?: number
}

/** Host memory of one KV block of the default model (keys and values of every layer). */
const { numLayers, numKvHeads, headDim } = PRESETS.default
const KV_BLOCK_BYTES = numLayers * 2 * numKvHeads * KV_BLOCK_TOKENS * headDim * 4

async function reports(): Promise<Report[]> {
  return ((await (await fetch(server.url + '/health')).json()) as { reports: Report[] }).reports
}

/** Wait until every process reports that it holds no request and no open trace context. */
async function settled(ms: number): Promise<Report[]> {
  const until = Date.now() + ms
  for (;;) {
    await new Promise((r) => setTimeout(r, 600))
    const r = await reports()
    if (r.length >= 4 && r.every((p) => p.live_requests === 0 && p.trace_contexts_open === 0)) return r
    if (Date.now() > until) return r
  }
}

const warm = await run(WARMUP, 0)
const before = await settled(20_000)

t.test(`${TOTAL} requests at concurrency ${CONCURRENCY}`, async (t) => {
  const scrapes: number[] = []
  let scraping = true
  const scraper = (async () => {
    while (scraping) {
      const res = await fetch(server.url + '/metrics')
      scrapes.push(parseExposition(await res.text()).sum('spanserve:generation_tokens_total'))
      await new Promise((r) => setTimeout(r, 300))
    }
  })()
  const outcomes = await run(TOTAL, WARMUP)
  scraping = false
  await scraper

  t.equal(outcomes.filter(Boolean).length, TOTAL, 'every request answered')
  const statuses = new Map<number, number>()
  for (const o of outcomes) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1)
  t.same([...statuses], [[200, TOTAL]], 'all 200: no 5xx, no error')
  t.ok(
    outcomes.every((o) => o.complete && o.finish !== null),
    'every response is whole (streams end with a finish reason and [DONE])',
  )
  t.equal(new Set(outcomes.map((o) => o.id)).size, TOTAL, 'no response id is lost or duplicated')

  t.ok(scrapes.length >= 3, `/metrics scraped during the run (${scrapes.length} times)`)
  t.ok(
    scrapes.every((v, i) => i === 0 || v >= scrapes[i - 1]!),
    'counters only grow',
  )
  const all = [...warm, ...outcomes]
  const metrics = parseExposition(await (await fetch(server.url + '/metrics')).text())
  t.equal(
    metrics.sum('spanserve:prompt_tokens_total'),
    all.reduce((a, o) => a + o.promptTokens, 0),
    'prompt token total is exact',
  )
  t.equal(
    metrics.sum('spanserve:generation_tokens_total'),
    all.reduce((a, o) => a + o.completionTokens, 0),
    'generation token total is exact',
  )
  t.equal(metrics.sum('spanserve:request_success_total'), WARMUP + TOTAL)
  t.equal(metrics.sum('spanserve:e2e_request_latency_seconds_count'), WARMUP + TOTAL)
  t.ok(metrics.sum('spanserve:batch_size_count') > 0, 'batch sizes observed from the scheduler')
  t.ok(
    metrics.samples.some((s) => s.name === 'spanserve:batch_size_bucket' && s.labels.le === '16' && s.value < metrics.sum('spanserve:batch_size_count')),
    'batches wider than 16 ran',
  )
  t.equal(metrics.sum('spanserve:span_export_dropped_total'), 0, 'no span was dropped')
  const om = parseExposition(await (await fetch(server.url + '/metrics', { headers: { accept: 'application/openmetrics-text' } })).text())
  const exemplar = om.samples.find((s) => s.name === 'spanserve:e2e_request_latency_seconds_bucket' && s.exemplar)?.exemplar
  t.match(exemplar?.labels.trace_id, /^[0-9a-f]{32}$/, 'latency buckets carry a trace-id exemplar (OpenMetrics)')

  const after = await settled(30_000)
  for (const p of after) {
    const label = `${p.role} dp${p.dp_rank} tp${p.tp_rank}`
    t.equal(p.live_requests, 0, `${label} holds no request`)
    t.equal(p.trace_contexts_open, 0, `${label} has no open trace context`)
    const b = before.find((x) => x.role === p.role && x.dp_rank === p.dp_rank && x.tp_rank === p.tp_rank)!
    // Allocators keep some of what the peak took; a leak of per-request state grows without bound.
    // Heap and external figures tell a JavaScript leak from native memory (ONNX Runtime, a thread) if this fails.
    const mib = (r: Report) => `RSS ${(r.rss_bytes / 2 ** 20).toFixed(0)}, heap ${(r.heap_used_bytes / 2 ** 20).toFixed(0)}, external ${(r.external_bytes / 2 ** 20).toFixed(0)}`
    // The prefix cache keeps finished prompts' KV within --max-total-tokens: that much may stay.
    const cached = ((p.kv_blocks ?? 0) - (b.kv_blocks ?? 0)) * KV_BLOCK_BYTES
    t.ok(p.rss_bytes < b.rss_bytes * 1.5 + 64 * 2 ** 20 + cached, `${label} memory settles: ${mib(b)} → ${mib(p)} MiB, ${(cached / 2 ** 20).toFixed(0)} MiB of it cached KV`)
  }

  // Every request's trace arrives whole: root, four thread spans, no missing parent.
  const ids = new Set(all.map((o) => o.traceId!))
  t.equal(ids.size, WARMUP + TOTAL, 'one trace per request')
  const whole = () => {
    const by = new Map<string, { names: string[]; spans: Set<string>; parents: string[] }>()
    for (const s of receiver.spans) {
      if (!ids.has(s.traceId)) continue
      let e = by.get(s.traceId)
      if (!e) by.set(s.traceId, (e = { names: [], spans: new Set(), parents: [] }))
      e.names.push(s.name)
      e.spans.add(s.spanId)
      e.parents.push(s.parentSpanId)
    }
    let n = 0
    for (const e of by.values()) {
      const threads = ['Server ', 'Tokenizer ', 'Scheduler ', 'Worker '].every((p) => e.names.some((x) => x.startsWith(p)))
      const orphans = e.parents.filter((p) => p !== '' && !e.spans.has(p)).length
      if (e.names.includes('llm_request') && threads && orphans === 0) n++
    }
    return n
  }
  const until = Date.now() + 30_000
  let complete = whole()
  while (complete < ids.size && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 1000))
    complete = whole()
  }
  t.equal(complete, ids.size, 'every trace is whole')

  // A log line leads to its trace.
  const line = server.logs.find((l) => l.msg === 'request finished' && typeof l.trace_id === 'string')!
  t.ok(line, 'request log lines carry trace_id')
  t.ok(
    receiver.spans.some((s) => s.traceId === line.trace_id && s.name === 'llm_request'),
    'and that trace exists',
  )
})
