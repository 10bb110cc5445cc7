/**
 * The flight recorder end to end (`--trace-level 1 --trace-flight-recorder 30`), received by a real
 * OTLP receiver from `npm start`: requests export their level-1 spans only, every process holds their
 * decode steps, /metrics shows what is held, and POST /v1/trace/dump (admin key only) exports them.
 */
import t from 'tap'
import { exportsFlushed, startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

const ADMIN_KEY = 'sk-admin-' + 'f'.repeat(24)
const TOKENS = 6
const REQUESTS = 3

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  env: { OTEL_BSP_SCHEDULE_DELAY: '100' },
  args: ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint, '--trace-level', '1', '--trace-flight-recorder', '30', '--admin-api-key', ADMIN_KEY, '--stats-interval', '0.2'],
})
t.teardown(() => server.stop())

const dump = (key: string | null) => fetch(server.url + '/v1/trace/dump', { method: 'POST', headers: key === null ? {} : { authorization: `Bearer ${key}` } })

t.test('decode steps are held, not exported, until a dump with the admin key', async (t) => {
  const ids: string[] = []
  for (let i = 0; i < REQUESTS; i++) {
    const res = await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt: `Hello ${i}`, max_tokens: TOKENS, ignore_eos: true, temperature: 0 }),
    })
    t.equal(res.status, 200)
    await res.text()
    ids.push(res.headers.get('traceparent')!.split('-')[1]!)
  }
  await exportsFlushed(receiver, async (traceparent) => {
    await (
      await fetch(server.url + '/v1/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent },
        body: JSON.stringify({ model: 'default', prompt: 'x', max_tokens: 1 }),
      })
    ).text()
  })
  const of = (id: string) => receiver.spans.filter((s) => s.traceId === id)
  for (const id of ids)
    t.ok(
      of(id).some((s) => s.name === 'decode_loop'),
      'level 1 exported: the folded decode loop',
    )
  t.same(
    receiver.spans.filter((s) => s.name === 'decode_forward').map((s) => s.traceId),
    [],
    'no decode step exported',
  )

  // The worker's report reaches /metrics with its next stats interval.
  let metrics = ''
  for (let i = 0; i < 50 && !/spanserve:flight_recorder_spans\{role="worker"[^}]*\} [1-9]/.test(metrics); i++) {
    await new Promise((r) => setTimeout(r, 100))
    metrics = await (await fetch(server.url + '/metrics')).text()
  }
  t.match(metrics, /spanserve:flight_recorder_spans\{role="worker"[^}]*\} [1-9]/, "the worker's held spans")
  t.match(metrics, /spanserve:flight_recorder_bytes\{role="worker"[^}]*\} [1-9]/)
  t.match(metrics, /spanserve:flight_recorder_dropped_total\{role="worker"[^}]*\} 0/)

  for (const key of [null, 'wrong']) {
    const refused = await dump(key)
    t.equal(refused.status, 401, `refused with key ${key}`)
    t.match(await refused.json(), { error: { code: 'SPANSERVE_ERR_UNAUTHORIZED', type: 'authentication_error', message: String } }, "in OpenAI's error shape")
  }
  t.same(
    receiver.spans.filter((s) => s.name === 'decode_forward'),
    [],
    'still nothing exported',
  )

  const res = await dump(ADMIN_KEY)
  t.equal(res.status, 200)
  const body = (await res.json()) as { flight_recorder: boolean; traces: number; spans: number; processes: number; answered: number }
  t.equal(body.flight_recorder, true)
  t.equal(body.answered, body.processes, `every process answered (${body.processes})`)
  t.ok(body.traces >= REQUESTS, `traces exported: ${body.traces}`)
  t.ok(body.spans >= REQUESTS * (TOKENS - 1), `spans exported: ${body.spans}`)
  await receiver.waitForSpans((all) => ids.every((id) => all.filter((s) => s.traceId === id && s.name === 'decode_forward').length >= TOKENS - 1), 10_000)
  for (const id of ids) {
    const thread = of(id).find((s) => s.name.startsWith('Worker '))
    t.ok(
      of(id)
        .filter((s) => s.name === 'decode_forward')
        .every((s) => s.parentSpanId === thread?.spanId),
      "each step under its request's worker thread span",
    )
  }
  const again = (await (await dump(ADMIN_KEY)).json()) as { spans: number }
  t.equal(again.spans, 0, 'a dump sends what it held once')
})
