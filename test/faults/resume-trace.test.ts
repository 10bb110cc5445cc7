/**
 * A resumed request is traced and counted: it stays one trace, its llm_request span carries a
 * request_resumed event naming the reason, the dead process and the tokens carried over, the new
 * attempt's tokenizer thread span is in the same trace, and /metrics counts the resume by reason and
 * the wait for the restart.
 */
import t from 'tap'
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts'
import { parseExposition } from '../helpers/prometheus.ts'
import { startServer } from '../helpers/server.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ args: ['--trace-enable', '--trace-level', '2', '--otlp-traces-endpoint', receiver.endpoint] })
t.teardown(() => server.stop())

t.test('a request resumed after a worker died', async (t) => {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'The little girl', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
  })
  t.equal(res.status, 200, 'the stream started')
  const traceId = res.headers.get('traceparent')!.split('-')[1]!
  const reader = res.body!.getReader()
  await reader.read()
  const pid = server.childPids()['worker-0-0']!
  process.kill(pid, 'SIGKILL')
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString('utf8')
  }
  t.match(text, /"finish_reason":"length"/, 'the stream finished')
  t.notMatch(text, /"error"/, 'with no error event')

  const spans = await receiver.waitForSpans((all) => all.some((s) => s.traceId === traceId && s.name === 'llm_request'), 30_000)
  const root = spans.find((s) => s.traceId === traceId && s.name === 'llm_request')!
  const resumed = root.events.filter((e) => e.name === 'request_resumed')
  t.equal(resumed.length, 1, 'llm_request has one request_resumed event')
  const a = resumed[0]?.attributes ?? {}
  t.equal(a['spanserve.resume.reason'], 'worker_died', 'its reason')
  t.equal(a['spanserve.resume.process'], 'worker-0-0', 'the process that died')
  t.equal(Number(a['spanserve.resume.process_pid']), pid, 'and its pid')
  t.ok(Number(a['spanserve.resume.tokens_carried']) > 0, `tokens carried over: ${a['spanserve.resume.tokens_carried']}`)
  await receiver.waitForSpans((all) => all.filter((s) => s.traceId === traceId && s.resource['spanserve.process.role'] === 'tokenizer' && s.parentSpanId === root.spanId).length >= 2, 30_000).then(
    () => t.pass('both attempts have their tokenizer thread span under the same llm_request'),
    (err: Error) => t.fail(err.message),
  )

  const metrics = parseExposition(await (await fetch(server.url + '/metrics')).text())
  t.equal(metrics.sum('spanserve:requests_resumed_total', { reason: 'worker_died' }), 1, 'spanserve:requests_resumed_total counts it by reason')
  t.equal(metrics.sum('spanserve:restart_wait_seconds_count', { outcome: 'served' }), 1, 'spanserve:restart_wait_seconds counts its wait')
  t.ok(metrics.sum('spanserve:restart_wait_seconds_sum', { outcome: 'served' }) > 0, 'and how long it was')
  const finished = server.logs.find((l) => l.msg === 'request finished' && l.trace_id === traceId)
  t.equal(finished?.resumed, 1, "the 'request finished' line says it was resumed once")
})
