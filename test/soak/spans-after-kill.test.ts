/**
 * No span lost to a crash: a worker SIGKILLed mid-request had queued its finished slices for an export
 * that never came (the export delay here is a minute), and yet every one of them reaches the collector,
 * over the real OTLP wire, with the dead worker's own resource: the server reads the dead process's
 * span journal (src/tracing/span-journal.ts) and exports them (orphan-spans.ts).
 *
 * What "every one" means: each token the stream delivered before the kill came from a step the worker
 * had finished, and so ended its slice (its first token from prefill_forward, each later one from a
 * decode_forward at --trace-level 3): the request_resumed event's tokens_carried counts them.
 */
import t from 'tap'
import { startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({
  args: ['--trace-enable', '--trace-level', '3', '--otlp-traces-endpoint', receiver.endpoint],
  // No process exports on its own while the test runs: what arrives from the dead worker came from its journal.
  env: { OTEL_BSP_SCHEDULE_DELAY: '60000' },
})
t.teardown(() => server.stop())

t.test("a SIGKILLed worker's finished slices all reach the collector", async (t) => {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'The little girl', max_tokens: 120, temperature: 0, ignore_eos: true, stream: true }),
  })
  t.equal(res.status, 200, 'the stream started')
  const traceId = res.headers.get('traceparent')!.split('-')[1]!
  const reader = res.body!.getReader()
  let text = ''
  // Some tokens in, the worker is mid-decode.
  while ((text.match(/"text"/g)?.length ?? 0) < 8) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString('utf8')
  }
  const pid = server.childPids()['worker-0-0']!
  t.equal(receiver.spans.filter((s) => Number(s.resource['process.pid']) === pid).length, 0, 'the worker had exported nothing before it died')
  process.kill(pid, 'SIGKILL')

  const fromDead = (all: ReceivedSpan[]) => all.filter((s) => s.traceId === traceId && Number(s.resource['process.pid']) === pid)
  // Well within the export delay: only the server's recovery can have sent them.
  const dead = await receiver
    .waitForSpans((all) => fromDead(all).some((s) => s.name === 'decode_forward'), 20_000)
    .then(fromDead, (err: Error) => {
      t.fail(err.message)
      return fromDead(receiver.spans)
    })
  await server
    .waitForLog((l) => l.msg === 'exported the spans a dead process had not' && l.child_pid === pid, 10_000)
    .then(
      (l) => t.pass(`the server says so: ${l.spans} span(s) of ${l.child}`),
      (err: Error) => t.fail(err.message),
    )
  const resource = dead[0]?.resource ?? {}
  t.equal(resource['spanserve.process.role'], 'worker', "they carry the dead worker's resource: its role")
  t.equal(resource['service.name'], 'spanserve', 'its service name')
  t.equal(resource['spanserve.dp_rank'], 0, 'its ranks')

  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString('utf8')
  }
  t.match(text, /"finish_reason":"length"/, 'the stream finished on the restarted worker')

  // The server's own spans wait for its export: a clean stop sends them.
  await server.stop()
  const root = receiver.spans.find((s) => s.traceId === traceId && s.name === 'llm_request')
  const carried = Number(root?.events.find((e) => e.name === 'request_resumed')?.attributes['spanserve.resume.tokens_carried'])
  t.ok(carried >= 8, `the stream had delivered ${carried} tokens when the worker died`)
  const recovered = fromDead(receiver.spans)
  const prefill = recovered.filter((s) => s.name === 'prefill_forward')
  const decode = recovered.filter((s) => s.name === 'decode_forward')
  t.equal(prefill.length, 1, "the dead worker's prefill_forward arrived")
  // The last step's token leaves the worker before its slice reaches the tracing thread (the step posts
  // its output, then records its slices): a kill in that fraction of a millisecond costs that one slice.
  t.ok(decode.length >= carried - 2, `and a decode_forward for every later token it delivered, but perhaps the last: ${decode.length} for ${carried - 1}`)
  const steps = decode.map((s) => Number(s.attributes['spanserve.step'])).sort((a, b) => a - b)
  const first = Number(prefill[0]?.attributes['spanserve.step']) + 1
  t.same(
    steps,
    steps.map((_, i) => first + i),
    'one for each step from the first after the prefill, none missing between',
  )
  t.equal(new Set(recovered.map((s) => s.spanId)).size, recovered.length, 'each once')
  t.equal(fromDead(receiver.spans).filter((s) => s.name.startsWith('Worker')).length, 0, 'its thread span, open when it died, is not among them')
})
