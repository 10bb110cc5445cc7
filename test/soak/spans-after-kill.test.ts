/**
 * No span lost to a crash: a worker SIGKILLed mid-request had queued its finished slices for an export
 * that never came (the export delay here is a minute), and yet every one of them reaches the collector,
 * over the real OTLP wire, with the dead worker's own resource: the server reads the dead process's
 * span journal (src/tracing/span-journal.ts) and exports them (orphan-spans.ts).
 *
 * What "every one" means: every slice the worker had journaled when it was killed (read from its
 * journal, in the server's private run directory, just before the kill) reaches the collector, from
 * its prefill_forward on, step after step with none missing. Not every token delivered: a step's
 * output leaves the worker before its slices reach the tracing thread that journals them, and on a
 * loaded machine that thread can be a step or two behind when the kill comes.
 */
import t from 'tap'
import { startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { startServer } from '../../harness/server.ts'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readJournal } from '../../src/tracing/orphan-spans.ts'

/** decode_forward slices of `traceId` in the journal of worker `pid` (in the server's run directory, found by the pid). */
async function journaledSteps(pid: number, traceId: string): Promise<number> {
  for (const d of readdirSync(tmpdir()).filter((n) => n.startsWith('spanserve-'))) {
    const dir = join(tmpdir(), d)
    let names: string[] = []
    try {
      names = readdirSync(dir)
    } catch {
      continue
    }
    if (!names.some((n) => n.startsWith(`worker-0-0.${pid}.`))) continue
    const { spans } = await readJournal(dir, 'worker-0-0', pid)
    return spans.filter((s) => s.spanContext().traceId === traceId && s.name === 'decode_forward').length
  }
  return 0
}

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
  const journaled = await journaledSteps(pid, traceId)
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
  t.ok(journaled > 0, `the worker journaled its decode steps as it went: ${journaled} before the kill, of ${carried - 1} delivered`)
  t.ok(decode.length >= journaled, `and every decode_forward it had journaled arrived: ${decode.length} (${journaled} journaled when read)`)
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
