/**
 * Sampling and levels at run time through the real processes: GET/POST /v1/trace/setting, the
 * sample rate for callers without a traceparent, and paths excluded from tracing.
 */
import t from 'tap'
import { exportsFlushed, startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

/** Spans exported every 100 ms, not the SDK's 5 s: the waits for them are waits for events, and short. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' }

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ env: FAST_EXPORT, args: ['--trace-enable', '--trace-level', '3', '--otlp-traces-endpoint', receiver.endpoint] })
t.teardown(() => server.stop())

async function complete(maxTokens: number, traceparent?: string) {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(traceparent ? { traceparent } : {}) },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0 }),
  })
  await res.text()
  return res.headers.get('traceparent')!.split('-')[1]!
}

async function setting(body?: object) {
  const res = await fetch(server.url + '/v1/trace/setting', body ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {})
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

/** Every span ended so far has arrived (a marker request's, from all four processes). */
const settle = () => exportsFlushed(receiver, async (traceparent) => void (await complete(1, traceparent)))

t.test('GET reads the setting', async (t) => {
  t.same((await setting()).json, { enabled: true, level: 3, sample_rate: 1 })
})

t.test('level 3 records one decode_forward per step; level 1 folds them into decode_loop', async (t) => {
  const at3 = await complete(6)
  await receiver.waitForSpans((s) => s.some((x) => x.traceId === at3 && x.name.startsWith('Worker ')), 15_000)
  await settle()
  const steps3 = receiver.spans.filter((s) => s.traceId === at3 && s.name === 'decode_forward')
  t.equal(steps3.length, 5, 'one slice per decode step (the first token comes from prefill)')
  t.same((await setting({ level: 1 })).json, { enabled: true, level: 1, sample_rate: 1 })
  await new Promise((r) => setTimeout(r, 300)) // the change travels to every process
  const at1 = await complete(6)
  await receiver.waitForSpans((s) => s.some((x) => x.traceId === at1 && x.name.startsWith('Worker ')), 15_000)
  await settle()
  const mine = receiver.spans.filter((s) => s.traceId === at1)
  t.equal(mine.filter((s) => s.name === 'decode_forward').length, 0)
  const loops = mine.filter((s) => s.name === 'decode_loop')
  t.equal(loops.length, 1)
  t.equal(loops[0]!.attributes['spanserve.decode.steps'], 5)
  t.equal(mine.filter((s) => s.name === 'detokenize').length, 0, 'level-3 detokenize slices are gone too')
})

t.test('sample rate 0: requests without a traceparent produce no span in any process', async (t) => {
  t.equal((await setting({ sample_rate: 0 })).json.sample_rate, 0)
  await new Promise((r) => setTimeout(r, 300))
  const traceId = await complete(3)
  await settle()
  t.equal(receiver.spans.filter((s) => s.traceId === traceId).length, 0)
  await setting({ sample_rate: 1, level: 3 })
})

t.test('bad settings are refused', async (t) => {
  t.equal((await setting({ level: 7 })).status, 400)
  t.equal((await setting({ sample_rate: 2 })).status, 400)
  t.equal((await setting({})).status, 400)
})

t.test('/health and /v1/models are not traced', async (t) => {
  await fetch(server.url + '/health')
  await fetch(server.url + '/v1/models')
  await settle()
  const paths = receiver.spans.map((s) => s.attributes['url.path'])
  t.notOk(paths.includes('/health'))
  t.notOk(paths.includes('/v1/models'))
  t.ok(paths.includes('/v1/completions'), 'while completions are')
})
