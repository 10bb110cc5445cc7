/**
 * A resumed request is traced and counted: it stays one trace, its llm_request span carries a
 * request_resumed event naming the reason, the dead process and the tokens carried over, the new
 * attempt's tokenizer thread span is in the same trace, every thread span of the new attempt
 * (tokenizer, scheduler, worker) links to the last slice the dead worker exported, and /metrics
 * counts the resume by reason and the wait for the restart.
 *
 * The export delay is shortened (OTEL_BSP_SCHEDULE_DELAY, the SDK default is 5 s) so that the worker
 * exports its first slice of the request, and reports it to the server, before it is killed.
 */
import t from 'tap'
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts'
import { parseExposition } from '../helpers/prometheus.ts'
import { startServer } from '../helpers/server.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  args: ['--trace-enable', '--trace-level', '2', '--otlp-traces-endpoint', receiver.endpoint],
  env: { OTEL_BSP_SCHEDULE_DELAY: '100' },
})
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
  // The worker's prefill_forward slice reached the collector; its report of it (a slice mark) goes to
  // the server right after that export's answer: give it a moment, then kill the worker mid-decode.
  const fromDeadWorker = (s: ReceivedSpan) => s.traceId === traceId && Number(s.resource['process.pid']) === pid
  await receiver.waitForSpans((all) => all.some(fromDeadWorker), 10_000)
  await new Promise((resolve) => setTimeout(resolve, 300))
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

  // The new attempt's thread spans (rid.1) in each process link to a slice the dead worker exported.
  const rid = String(root.attributes['spanserve.request.id'])
  const newThreads = (all: ReceivedSpan[]) => all.filter((s) => s.traceId === traceId && s.parentSpanId === root.spanId && s.attributes['spanserve.request.id'] === `${rid}.1`)
  const threads = await receiver.waitForSpans((all) => newThreads(all).length >= 3, 30_000).then(newThreads, (err: Error) => {
    t.fail(err.message)
    return newThreads(receiver.spans)
  })
  const deadSlices = new Map(receiver.spans.filter(fromDeadWorker).map((s) => [s.spanId, s]))
  t.ok(deadSlices.size > 0, `the dead worker (pid ${pid}) exported ${deadSlices.size} span(s) of the request: ${[...deadSlices.values()].map((s) => s.name).join(', ')}`)
  for (const role of ['tokenizer', 'scheduler', 'worker']) {
    const thread = threads.find((s) => s.resource['spanserve.process.role'] === role)
    if (!thread) {
      t.fail(`the new attempt has a ${role} thread span`)
      continue
    }
    t.equal(thread.links.length, 1, `the new attempt's ${role} thread span has one link`)
    const link = thread.links[0]
    const target = link === undefined ? undefined : deadSlices.get(link.spanId)
    t.ok(link !== undefined && link.traceId === traceId && target !== undefined, `in the same trace, to a span the dead worker exported (${target?.name ?? link?.spanId ?? 'none'})`)
    t.equal(target?.parentSpanId !== undefined && !deadSlices.has(target.parentSpanId), true, 'a top-level slice of its thread span')
    t.same(link?.attributes, { 'spanserve.link.reason': 'resumed_from', 'spanserve.link.process': 'worker-0-0', 'spanserve.link.process_pid': pid }, 'which says why and names the dead process')
  }

  const metrics = parseExposition(await (await fetch(server.url + '/metrics')).text())
  t.equal(metrics.sum('spanserve:requests_resumed_total', { reason: 'worker_died' }), 1, 'spanserve:requests_resumed_total counts it by reason')
  t.equal(metrics.sum('spanserve:restart_wait_seconds_count', { outcome: 'served' }), 1, 'spanserve:restart_wait_seconds counts its wait')
  t.ok(metrics.sum('spanserve:restart_wait_seconds_sum', { outcome: 'served' }) > 0, 'and how long it was')
  const finished = server.logs.find((l) => l.msg === 'request finished' && l.trace_id === traceId)
  t.equal(finished?.resumed, 1, "the 'request finished' line says it was resumed once")
})
