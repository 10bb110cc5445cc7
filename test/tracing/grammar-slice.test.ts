/**
 * Grammar compilation is a slice of its own: a constrained request's trace, received by a real
 * OTLP receiver, has `grammar_compile` in the worker's thread span, before its `prefill_forward`,
 * with the constraint's kind and whether the worker's cache had it (the second identical schema).
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

/** Spans exported every 100 ms, not the SDK's 5 s: the waits for them are waits for events, and short. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' }

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ env: FAST_EXPORT, args: ['--trace-enable', '--trace-level', '1', '--otlp-traces-endpoint', receiver.endpoint] })
t.teardown(() => server.stop())

const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false }

async function constrainedTrace(t: Test): Promise<ReceivedSpan[]> {
  const traceId = randomBytes(16).toString('hex')
  const res = await fetch(server.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    body: JSON.stringify({
      model: 'default',
      messages: [{ role: 'user', content: 'ok?' }],
      max_tokens: 16,
      temperature: 0,
      response_format: { type: 'json_schema', json_schema: { name: 'ok', strict: true, schema } },
    }),
  })
  t.equal(res.status, 200)
  JSON.parse(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content)
  // The slices, and the thread span they belong to (it ends after them, so it may come in a later export).
  await receiver.waitForSpans((spans) => {
    const mine = spans.filter((s) => s.traceId === traceId)
    const slice = mine.find((s) => s.name === 'grammar_compile')
    return mine.some((s) => s.name === 'prefill_forward') && slice !== undefined && mine.some((s) => s.spanId === slice.parentSpanId)
  }, 20_000)
  return receiver.spans.filter((s) => s.traceId === traceId)
}

t.test('grammar_compile: in the worker, before the prefill, its kind and cache use recorded', async (t) => {
  for (const cacheHit of [false, true]) {
    const spans = await constrainedTrace(t)
    const slice = spans.find((s) => s.name === 'grammar_compile')!
    const prefill = spans.find((s) => s.name === 'prefill_forward')!
    const parent = spans.find((s) => s.spanId === slice.parentSpanId)
    t.match(parent?.name, /^Worker /, 'a slice of the worker thread span')
    t.equal(slice.attributes['spanserve.grammar.type'], 'json_schema')
    t.equal(slice.attributes['spanserve.grammar.cache_hit'], cacheHit, cacheHit ? 'the second time from the cache' : 'compiled the first time')
    t.ok(BigInt(slice.endTimeUnixNano) <= BigInt(prefill.startTimeUnixNano), 'ends before the prefill starts')
  }
})

t.test('llm_request names the requested output type (gen_ai.output.type), and only for a constrained request', async (t) => {
  const spans = await constrainedTrace(t)
  await receiver.waitForSpans((all) => all.some((s) => s.traceId === spans[0]!.traceId && s.name === 'llm_request'), 20_000)
  const root = receiver.spans.find((s) => s.traceId === spans[0]!.traceId && s.name === 'llm_request')!
  t.equal(root.attributes['gen_ai.output.type'], 'json')
  const traceId = randomBytes(16).toString('hex')
  await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    body: JSON.stringify({ model: 'default', prompt: 'a', max_tokens: 2, guided_choice: ['yes', 'no'] }),
  }).then((r) => r.json())
  await receiver.waitForSpans((all) => all.some((s) => s.traceId === traceId && s.name === 'llm_request'), 20_000)
  t.equal(receiver.spans.find((s) => s.traceId === traceId && s.name === 'llm_request')!.attributes['gen_ai.output.type'], 'text', 'a choice constrains text')
  const plain = randomBytes(16).toString('hex')
  await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: `00-${plain}-${randomBytes(8).toString('hex')}-01` },
    body: JSON.stringify({ model: 'default', prompt: 'a', max_tokens: 2 }),
  }).then((r) => r.json())
  await receiver.waitForSpans((all) => all.some((s) => s.traceId === plain && s.name === 'llm_request'), 20_000)
  t.notOk('gen_ai.output.type' in receiver.spans.find((s) => s.traceId === plain && s.name === 'llm_request')!.attributes, 'unconstrained: not set')
})
