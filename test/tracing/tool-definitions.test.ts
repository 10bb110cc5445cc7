/**
 * The tools a chat request offers are on its llm_request span as gen_ai.tool.definitions (type and
 * name only, as the semantic conventions advise by default), and only with --trace-record-content.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startServer } from '../../harness/server.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'

/** Spans exported every 100 ms, not the SDK's 5 s: the waits for them are waits for events, and short. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' }

const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city (secret wording)', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
  { type: 'function', function: { name: 'get_time' } },
]

for (const record of [true, false]) {
  t.test(record ? 'with --trace-record-content: the tool names' : 'without it: nothing about the tools', async (t) => {
    const receiver = await startOtlpReceiver({ protocol: 'grpc' })
    t.teardown(() => receiver.close())
    const server = await startServer({ env: FAST_EXPORT, args: ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint, ...(record ? ['--trace-record-content'] : [])] })
    t.teardown(() => server.stop())
    const traceId = randomBytes(16).toString('hex')
    const res = await fetch(server.url + '/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Weather?' }], tools, max_tokens: 2 }),
    })
    t.equal(res.status, 200)
    await receiver.waitForSpans((spans) => spans.some((s) => s.traceId === traceId && s.name === 'llm_request'), 20_000)
    const root = receiver.spans.find((s) => s.traceId === traceId && s.name === 'llm_request')!
    const defs = root.attributes['gen_ai.tool.definitions']
    if (record) {
      t.same(JSON.parse(defs as string), [
        { type: 'function', name: 'get_weather' },
        { type: 'function', name: 'get_time' },
      ])
      t.notMatch(defs as string, /secret wording/, 'descriptions and schemas stay out')
    } else {
      t.equal(defs, undefined)
      t.notMatch(JSON.stringify(root.attributes), /get_weather/)
    }
  })
}
