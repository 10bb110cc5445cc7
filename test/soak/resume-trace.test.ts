/**
 * A resumed request is traced and counted: it stays one trace, its llm_request span carries a
 * request_resumed event naming the reason, the dead process and the tokens carried over, the new
 * attempt's tokenizer thread span is in the same trace, every thread span of the new attempt
 * (tokenizer, scheduler, worker) links to the last slice the dead process exported, and /metrics
 * counts the resume by reason and the wait for the restart. The dead process is, in turn, the
 * worker, the scheduler and the tokenizer, each SIGKILLed mid-decode.
 *
 * The export delay is shortened (OTEL_BSP_SCHEDULE_DELAY, the SDK default is 5 s) so that the
 * process exports its first slice of the request, and reports it to the server, before it is killed.
 */
import t, { type Test } from 'tap'
import { startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { parseExposition } from '../helpers/prometheus.ts'
import { startServer } from '../../harness/server.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  args: ['--trace-enable', '--trace-level', '2', '--otlp-traces-endpoint', receiver.endpoint],
  env: { OTEL_BSP_SCHEDULE_DELAY: '100' },
})
t.teardown(() => server.stop())

const metrics = async () => parseExposition(await (await fetch(server.url + '/metrics')).text())

/**
 * Streams a request, SIGKILLs the child `key` (by its own pid) once a slice of the request it
 * recorded reached the collector, and checks the resumed request's trace and counts.
 */
async function resumedAfterKill(t: Test, key: string, reason: string): Promise<void> {
  const before = await metrics()
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'The little girl', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
  })
  t.equal(res.status, 200, 'the stream started')
  const traceId = res.headers.get('traceparent')!.split('-')[1]!
  const reader = res.body!.getReader()
  await reader.read()
  const pid = server.childPids()[key]!
  // A slice of the process (the worker's prefill_forward, the scheduler's prefill_waiting, the
  // tokenizer's tokenize) reached the collector; its report of it (a slice mark) goes to the server
  // right after that export's answer: give it a moment, then kill the process mid-decode.
  const fromDead = (s: ReceivedSpan) => s.traceId === traceId && Number(s.resource['process.pid']) === pid
  await receiver.waitForSpans((all) => all.some(fromDead), 10_000)
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
  t.equal(a['spanserve.resume.reason'], reason, 'its reason')
  t.equal(a['spanserve.resume.process'], key, 'the process that died')
  t.equal(Number(a['spanserve.resume.process_pid']), pid, 'and its pid')
  t.ok(Number(a['spanserve.resume.tokens_carried']) > 0, `tokens carried over: ${a['spanserve.resume.tokens_carried']}`)
  // A dead tokenizer's thread span of the first attempt died with it, unexported; otherwise the
  // surviving tokenizer ended it when the attempt was lost.
  const tokenizerThreads = key === 'tokenizer' ? 1 : 2
  await receiver
    .waitForSpans((all) => all.filter((s) => s.traceId === traceId && s.resource['spanserve.process.role'] === 'tokenizer' && s.parentSpanId === root.spanId).length >= tokenizerThreads, 30_000)
    .then(
      () => t.pass(`${tokenizerThreads === 2 ? 'both attempts have their' : 'the new attempt has its'} tokenizer thread span under the same llm_request`),
      (err: Error) => t.fail(err.message),
    )

  // The new attempt's thread spans (rid.1) in each process link to a slice the dead process exported.
  const rid = String(root.attributes['spanserve.request.id'])
  const newThreads = (all: ReceivedSpan[]) => all.filter((s) => s.traceId === traceId && s.parentSpanId === root.spanId && s.attributes['spanserve.request.id'] === `${rid}.1`)
  const threads = await receiver
    .waitForSpans((all) => newThreads(all).length >= 3, 30_000)
    .then(newThreads, (err: Error) => {
      t.fail(err.message)
      return newThreads(receiver.spans)
    })
  const deadSlices = new Map(receiver.spans.filter(fromDead).map((s) => [s.spanId, s]))
  t.ok(deadSlices.size > 0, `the dead ${key} (pid ${pid}) exported ${deadSlices.size} span(s) of the request: ${[...deadSlices.values()].map((s) => s.name).join(', ')}`)
  for (const role of ['tokenizer', 'scheduler', 'worker']) {
    const thread = threads.find((s) => s.resource['spanserve.process.role'] === role)
    if (!thread) {
      t.fail(`the new attempt has a ${role} thread span`)
      continue
    }
    t.equal(thread.links.length, 1, `the new attempt's ${role} thread span has one link`)
    const link = thread.links[0]
    const target = link === undefined ? undefined : deadSlices.get(link.spanId)
    t.ok(link !== undefined && link.traceId === traceId && target !== undefined, `in the same trace, to a span the dead ${key} exported (${target?.name ?? link?.spanId ?? 'none'})`)
    t.equal(target?.parentSpanId !== undefined && !deadSlices.has(target.parentSpanId), true, 'a top-level slice of its thread span')
    t.same(link?.attributes, { 'spanserve.link.reason': 'resumed_from', 'spanserve.link.process': key, 'spanserve.link.process_pid': pid }, 'which says why and names the dead process')
  }

  const after = await metrics()
  const delta = (name: string, labels: Record<string, string>) => after.sum(name, labels) - before.sum(name, labels)
  t.equal(delta('spanserve:requests_resumed_total', { reason }), 1, 'spanserve:requests_resumed_total counts it by reason')
  t.equal(delta('spanserve:restart_wait_seconds_count', { outcome: 'served' }), 1, 'spanserve:restart_wait_seconds counts its wait')
  t.ok(delta('spanserve:restart_wait_seconds_sum', { outcome: 'served' }) > 0, 'and how long it was')
  const finished = server.logs.find((l) => l.msg === 'request finished' && l.trace_id === traceId)
  t.equal(finished?.resumed, 1, "the 'request finished' line says it was resumed once")
}

t.test('a request resumed after a worker died', (t) => resumedAfterKill(t, 'worker-0-0', 'worker_died'))
t.test('a request resumed after its scheduler died', (t) => resumedAfterKill(t, 'scheduler-0', 'scheduler_died'))
t.test('a request resumed after the tokenizer died', (t) => resumedAfterKill(t, 'tokenizer', 'tokenizer_died'))
