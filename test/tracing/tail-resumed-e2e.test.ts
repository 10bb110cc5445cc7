/**
 * Tail sampling keeps a resumed request (`--trace-sample-rate 0.01 --trace-keep resumed`), end to end
 * over the real OTLP wire: a stream whose worker is SIGKILLed mid-decode is resumed on the restarted
 * worker and its trace exported whole, kept by `resumed`: the request root, the server's, tokenizer's
 * and scheduler's thread spans of both attempts, the new worker's, and the slices the dead worker had
 * finished and held for the verdict (its held journal, read by the server); the new attempt links to
 * the last of them (resumed_from). Of the plain requests beside it, at most the head rate's few are
 * exported, kept as `sampled`.
 */
import t from 'tap'
import { exportsFlushed, startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  env: { OTEL_BSP_SCHEDULE_DELAY: '100' },
  args: ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint, '--trace-sample-rate', '0.01', '--trace-keep', 'resumed'],
})
t.teardown(() => server.stop())

/** Plain requests sent beside the resumed one: at rate 0.01, nearly all are not exported. */
const PLAIN = 8

t.test('a request resumed after its worker died is kept whole', async (t) => {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'The little girl', max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true }),
  })
  t.equal(res.status, 200)
  const traceId = res.headers.get('traceparent')!.split('-')[1]!
  const reader = res.body!.getReader()
  let before = ''
  // Past the first token, and long enough for the held prefill slice's mark (reported every 100 ms) to reach the server.
  const since = Date.now()
  while (!/"text"/.test(before) || Date.now() - since < 400) before += Buffer.from((await reader.read()).value ?? []).toString('utf8')
  t.notMatch(before, /finish_reason":"length"/, 'still streaming when the worker dies')
  const dead = server.childPids()['worker-0-0']!
  process.kill(dead, 'SIGKILL')
  let sse = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    sse += Buffer.from(value).toString('utf8')
  }
  t.match(sse, /"finish_reason":"length"/, 'the stream finished')
  t.notMatch(sse, /"error"/, 'with no error')

  // Plain requests beside it: at rate 0.01 one may be head-sampled (a 1% draw), never kept as resumed.
  const plainTraces: string[] = []
  for (let i = 0; i < PLAIN; i++) {
    const plain = await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt: `Hello ${i}`, max_tokens: 2 }),
    })
    plainTraces.push(plain.headers.get('traceparent')!.split('-')[1]!)
    await plain.text()
  }
  await exportsFlushed(receiver, async (traceparent) => {
    const r = await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent },
      body: JSON.stringify({ model: 'default', prompt: 'x', max_tokens: 1 }),
    })
    await r.text()
  })
  const spans = receiver.spans.filter((s) => s.traceId === traceId)
  const root = spans.find((s) => s.name === 'llm_request')
  t.ok(root, 'the resumed request was exported')
  t.equal(root?.attributes['spanserve.trace.kept_by'], 'resumed', 'kept by the resumed policy')
  t.ok(
    root?.events.some((e) => e.name === 'request_resumed'),
    'with its request_resumed event',
  )
  t.notOk(
    spans.some((s) => /^(onRequest|preHandler) - /.test(s.name)),
    'no @fastify/otel lifecycle hook spans at the default level (the request and handler spans only)',
  )
  t.ok(
    spans.some((s) => s.name.startsWith('handler - ')),
    'the handler span stays',
  )
  const ids = new Set(spans.map((s) => s.spanId))
  const fromDead = spans.filter((s) => Number(s.resource['process.pid']) === dead)
  t.ok(
    fromDead.some((s) => s.name === 'prefill_forward'),
    `the dead worker's held slices arrived: ${fromDead.map((s) => s.name).join(', ')}`,
  )
  t.same(
    spans.filter((s) => s.parentSpanId !== '' && !ids.has(s.parentSpanId) && Number(s.resource['process.pid']) !== dead).map((s) => s.name),
    [],
    "every span's parent is present (but the dead worker's thread span, which never ended)",
  )
  const threads = (role: string) => spans.filter((s) => s.parentSpanId === root?.spanId && s.resource['spanserve.process.role'] === role)
  t.equal(threads('tokenizer').length, 2, "the tokenizer's thread spans of both attempts")
  t.equal(threads('scheduler').length, 2, "the scheduler's thread spans of both attempts")
  const workers = threads('worker')
  t.ok(workers.length >= 1, "the new worker's thread span")
  t.ok(
    workers.every((s) => Number(s.resource['process.pid']) !== dead),
    "from the restarted worker (the dead one's never ended)",
  )
  const deadIds = new Set(fromDead.map((s) => s.spanId))
  const resumedThreads = spans.filter((s) => s.parentSpanId === root?.spanId && s.links.some((l) => l.attributes['spanserve.link.reason'] === 'resumed_from'))
  t.ok(resumedThreads.length >= 1, `the new attempt's thread spans link back: ${resumedThreads.map((s) => s.resource['spanserve.process.role']).join(', ')}`)
  for (const s of resumedThreads) {
    const link = s.links.find((l) => l.attributes['spanserve.link.reason'] === 'resumed_from')!
    t.ok(deadIds.has(link.spanId), `the ${s.resource['spanserve.process.role']} thread span's resumed_from link points at a span that arrived from the dead worker`)
  }
  const exported = plainTraces.filter((id) => receiver.spans.some((s) => s.traceId === id))
  t.ok(exported.length <= PLAIN / 4, `plain requests beside it exported: ${exported.length} of ${PLAIN} (1% expected)`)
  for (const id of exported) {
    const plainRoot = receiver.spans.find((s) => s.traceId === id && s.name === 'llm_request')
    t.equal(plainRoot?.attributes['spanserve.trace.kept_by'], 'sampled', 'kept by the head rate, not as resumed')
  }
})
