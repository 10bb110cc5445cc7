/**
 * Poison requests. A request whose step makes its worker throw, abort or hang, is lost with the worker's
 * death twice and then failed with SPANSERVE_ERR_POISON_REQUEST (500), not resumed a third time: the
 * worker dies twice, not three times, the failure is logged with the trace id and counted in
 * /metrics, and serving goes on. Kills from outside are no request's fault: streams in flight through
 * two SIGKILLs resume both times and end in full. The faults come from the worker's test-only hook
 * (src/worker/fault-injection.ts), keyed on the request's seed.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, type RunningServer } from '../../harness/server.ts'
import { waitHealthy } from '../../harness/chaos.ts'

const THROW_SEED = 101
const HANG_SEED = 102
const ABORT_SEED = 103
const traceDir = mkdtempSync(join(tmpdir(), 'spanserve-poison-'))
t.teardown(() => rmSync(traceDir, { recursive: true, force: true }))
const server = await startServer({
  env: { SPANSERVE_FAULT_INJECTION: `throw:${THROW_SEED},hang:${HANG_SEED},abort:${ABORT_SEED}` },
  // Tracing to a file: the poison log line then carries a trace id.
  args: ['--hang-timeout', '3', '--stats-interval', '0.5', '--trace-enable', '--trace-exporter', 'file', '--trace-file', join(traceDir, 'spans.jsonl')],
})
t.teardown(() => server.stop())

function complete(body: Record<string, unknown>): Promise<Response> {
  return fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', ...body }) })
}

const deathsOf = (s: RunningServer, from: number, child: string) => s.logs.slice(from).filter((l) => l.msg === 'process died; restarting it' && l.child === child)

async function metric(name: string): Promise<string> {
  const text = await (await fetch(server.url + '/metrics')).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n')
}

/** A stream read as it comes: its raw text so far, and a wait for more data events. */
function openStream(prompt: string) {
  const s = { raw: '', events: 0, ended: false, waiters: [] as { at: number; resolve: () => void }[], done: null as Promise<void> | null }
  s.done = (async () => {
    const res = await complete({ prompt, max_tokens: 1900, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } })
    const reader = res.body!.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const chunk = Buffer.from(value).toString()
      s.raw += chunk
      s.events += chunk.split('\n\n').filter((e) => e.startsWith('data: ')).length
      for (const w of s.waiters.filter((w) => s.events >= w.at)) w.resolve()
      s.waiters = s.waiters.filter((w) => s.events < w.at)
    }
    s.ended = true
    for (const w of s.waiters) w.resolve()
  })()
  return { s, more: () => new Promise<void>((resolve) => (s.ended ? resolve() : s.waiters.push({ at: s.events + 1, resolve }))) }
}

t.test('streams in flight through two SIGKILLs from outside resume both times and end in full', async (t) => {
  const from = server.logs.length
  const streams = ['The little girl', 'In the morning'].map(openStream)
  await Promise.all(streams.map((x) => x.more()))
  for (const victim of ['worker-0-0', 'scheduler-0']) {
    const pid = server.childPids()[victim]!
    const seen = server.logs.length
    process.kill(pid, 'SIGKILL')
    // Back: the server has resubmitted the streams to the new process, and the next kill loses them again.
    await server.waitForLog((l) => l.msg === 'process ready' && l.child === victim && server.logs.indexOf(l) >= seen, 60_000)
  }
  await Promise.all(streams.map((x) => x.s.done))
  for (const { s } of streams) {
    t.notOk(/"error"/.test(s.raw), 'no error event')
    t.match(s.raw, /"finish_reason":"length"/, 'finished')
    t.match(s.raw, /"completion_tokens":1900/, 'every token')
    t.match(s.raw, /data: \[DONE\]\n\n$/)
  }
  const deaths = server.logs.slice(from).filter((l) => l.msg === 'process died; restarting it')
  t.same(
    deaths.map((d) => d.cause),
    ['external', 'external'],
    'both deaths are from outside',
  )
  const resumed = server.logs.slice(from).filter((l) => l.msg === 'request resumed')
  t.equal(resumed.length, 4, 'each stream was resumed after each kill')
  t.notOk(
    server.logs.slice(from).some((l) => l.msg === 'poison request: failed, not resumed again'),
    'none failed as poison',
  )
})

// After the kills from outside: poison deaths come soon after a restart and are futile ones, which
// the kills of a serving worker are not (test/soak/crash-loop.test.ts).
for (const [seed, cause] of [
  [THROW_SEED, 'exception'],
  [ABORT_SEED, 'crash'],
  [HANG_SEED, 'hung'],
] as const) {
  t.test(`a request that makes its worker ${{ exception: 'throw', crash: 'abort', hung: 'hang' }[cause]} twice is failed as poison, not resumed a third time`, async (t) => {
    const from = server.logs.length
    const res = await complete({ max_tokens: 8, temperature: 0.5, seed })
    t.equal(res.status, 500, 'HTTP 500')
    const body = (await res.json()) as { error: { code: string; type: string; message: string } }
    t.equal(body.error.code, 'SPANSERVE_ERR_POISON_REQUEST', 'its own code')
    t.equal(body.error.type, 'server_error')
    t.match(body.error.message, new RegExp(`worker-0-0, ${cause}`), 'the message names the process and the cause')
    const poison = await server.waitForLog((l) => l.msg === 'poison request: failed, not resumed again' && server.logs.indexOf(l) >= from, 5000)
    t.equal(poison.level, 50, 'logged as an error')
    t.match(poison.trace_id, /^[0-9a-f]{32}$/, 'with its trace id')
    t.equal(poison.cause, cause)
    const resumed = server.logs.slice(from).filter((l) => l.msg === 'request resumed' && l.rid === poison.rid)
    t.equal(resumed.length, 1, 'resumed once, after the first death, and not after the second')
    t.ok(await waitHealthy(server, 60_000), 'the worker is back')
    const deaths = deathsOf(server, from, 'worker-0-0')
    t.equal(deaths.length, 2, 'the worker died twice, not a third time')
    t.ok(
      deaths.every((d) => d.cause === cause),
      `each death is its own (${cause})`,
    )
    t.match(await metric(`spanserve:poison_requests_total{cause="${cause}"}`), / 1$/, 'counted in /metrics')
    t.equal((await complete({ max_tokens: 4, temperature: 0 })).status, 200, 'serving goes on')
  })
}
