/**
 * Tail sampling end to end (`--trace-sample-rate 0.01 --trace-keep failed,slow`), received by a real
 * OTLP receiver from `npm start`: a request that failed in the worker and a slow streamed one are exported
 * whole (every process that worked on it, under one trace id: server, tokenizer, scheduler, and the
 * worker for the slow one), while most plain ones are not exported at all.
 */
import t, { type Test } from 'tap'
import { exportsFlushed, startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

/** Spans exported every 100 ms, not the SDK's 5 s: the waits for them are waits for events, and short. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' }
/** Only the end-to-end measure: a plain request (2 tokens) takes tens of ms, the slow one (SLOW_TOKENS) several times this. */
const SLOW_MS = 400
const SLOW_TOKENS = 600
const PLAIN = 12

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  env: FAST_EXPORT,
  args: [
    '--trace-enable',
    '--otlp-traces-endpoint',
    receiver.endpoint,
    '--trace-sample-rate',
    '0.01',
    '--trace-keep',
    'failed,slow',
    '--trace-keep-ttft-ms',
    '0',
    '--trace-keep-itl-p99-ms',
    '0',
    '--trace-keep-e2e-ms',
    String(SLOW_MS),
  ],
})
t.teardown(() => server.stop())

/** Posts a completion; returns its status, its trace id (from the traceparent header) and its time. */
async function complete(body: object, traceparent?: string): Promise<{ status: number; traceId: string; ms: number }> {
  const t0 = performance.now()
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(traceparent ? { traceparent } : {}) },
    body: JSON.stringify({ model: 'default', temperature: 0, ...body }),
  })
  await res.text()
  return { status: res.status, traceId: res.headers.get('traceparent')?.split('-')[1] ?? '', ms: performance.now() - t0 }
}

/** The trace is whole: every span's parent present (the HTTP span at the top), a thread span from each process that worked on it. */
function checkWhole(t: Test, spans: ReceivedSpan[], keptBy: string, processes: string[]): void {
  const ids = new Set(spans.map((s) => s.spanId))
  t.same(
    spans.filter((s) => s.parentSpanId !== '' && !ids.has(s.parentSpanId)).map((s) => s.name),
    [],
    "every span's parent is present",
  )
  const root = spans.find((s) => s.name === 'llm_request')
  t.equal(root?.attributes['spanserve.trace.kept_by'], keptBy, `kept_by ${keptBy}`)
  t.ok(
    spans.some((s) => s.attributes['http.route'] === '/v1/completions'),
    'the HTTP span, which ends after the verdict',
  )
  for (const p of processes) {
    t.ok(
      spans.some((s) => s.name.startsWith(p + ' ') && s.parentSpanId === root?.spanId),
      `${p}'s thread span`,
    )
  }
  t.equal(new Set(spans.map((s) => s.resource['process.pid'])).size, processes.length, `from ${processes.length} processes`)
}

t.test('failed and slow requests are kept whole; most plain ones are not exported', async (t) => {
  // Warm-up: the first requests compile code paths and may be slow themselves.
  for (let i = 0; i < 3; i++) await complete({ prompt: 'warm up', max_tokens: 2 })
  const plain: string[] = []
  for (let i = 0; i < PLAIN; i++) {
    const r = await complete({ prompt: `Hello ${i}`, max_tokens: 2 })
    t.equal(r.status, 200)
    t.ok(r.ms < SLOW_MS, `plain request ${i} is fast (${Math.round(r.ms)} ms)`)
    plain.push(r.traceId)
  }
  const failed = await complete({ prompt: 'a', max_tokens: 8, guided_grammar: 'root ::= nowhere' })
  t.equal(failed.status, 400, 'a grammar that does not compile fails in the worker')
  // Streamed: its HTTP span ends after the verdict, which it follows.
  const slow = await complete({ prompt: 'Once upon a time', max_tokens: SLOW_TOKENS, ignore_eos: true, stream: true })
  t.equal(slow.status, 200)
  t.ok(slow.ms > SLOW_MS, `the slow request is slow (${Math.round(slow.ms)} ms)`)

  // A marker sampled by its caller (kept by the head) has come from every process: all verdicts before it were applied.
  await exportsFlushed(receiver, async (traceparent) => void (await complete({ prompt: 'x', max_tokens: 1 }, traceparent)))
  const of = (id: string) => receiver.spans.filter((s) => s.traceId === id)
  // A grammar the worker refuses leaves no span there (its thread span starts with the prefill), with or without --trace-keep.
  t.test('failed', async (t) => checkWhole(t, of(failed.traceId), 'failed', ['Server', 'Tokenizer', 'Scheduler']))
  t.test('slow', async (t) => checkWhole(t, of(slow.traceId), 'slow_e2e', ['Server', 'Tokenizer', 'Scheduler', 'Worker']))
  const exported = plain.filter((id) => of(id).length > 0)
  t.ok(exported.length <= PLAIN / 4, `plain requests exported: ${exported.length} of ${PLAIN} (1% expected)`)
  for (const id of exported) t.equal(of(id).find((s) => s.name === 'llm_request')?.attributes['spanserve.trace.kept_by'], 'sampled', 'kept by the head rate')
})
