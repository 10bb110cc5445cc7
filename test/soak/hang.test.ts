/**
 * A process that hangs without exiting (here: stopped with SIGSTOP) stops sending its periodic
 * report; the watchdog kills it after --hang-timeout and replaces it, and its requests resume on
 * the replacement: the stream goes on to the text a fault-free run gives, with no error event.
 */
import t from 'tap'
import { startServer } from '../../harness/server.ts'

const server = await startServer({ args: ['--hang-timeout', '3', '--stats-interval', '0.5'] })
t.teardown(() => server.stop())

const body = { model: 'default', prompt: 'Once upon a time', max_tokens: 1500, temperature: 0, ignore_eos: true }

t.test('a stopped worker is killed and replaced; its stream resumes and ends as a fault-free one', async (t) => {
  const expected = (
    (await (await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as { choices: { text: string }[] }
  ).choices[0]!.text
  const pid = server.childPids()['worker-0-0']!
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  })
  const reader = res.body!.getReader()
  let raw = Buffer.from((await reader.read()).value!).toString()
  const stoppedAt = Date.now()
  process.kill(pid, 'SIGSTOP')
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    raw += Buffer.from(value).toString()
  }
  const events = raw
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => JSON.parse(e.slice(6)) as { error?: unknown; choices: { text: string; finish_reason: string | null }[]; usage?: { completion_tokens: number } })
  t.notOk(
    events.some((e) => e.error),
    'no error event',
  )
  t.equal(events.map((e) => e.choices[0]?.text ?? '').join(''), expected, 'the text of a fault-free run: nothing repeated, nothing missing')
  t.equal(events.at(-2)!.choices[0]!.finish_reason, 'length')
  t.equal(events.at(-1)!.usage?.completion_tokens, 1500, 'usage counts each token once (the include_usage chunk)')
  t.match(raw, /data: \[DONE\]\n\n$/)
  const hung = await server.waitForLog((l) => l.msg === 'process hung; killing it' && l.child === 'worker-0-0', 5000)
  t.equal(hung.child_pid, pid)
  // Silence is counted from the last report, up to one --stats-interval (0.5 s) before the stop.
  const detectedMs = Number(hung.time) - stoppedAt
  t.ok(detectedMs >= 2500 && detectedMs < 20_000, `killed after the hang timeout (${detectedMs} ms)`)
  const resumed = await server.waitForLog((l) => l.msg === 'request resumed', 5000)
  t.ok(resumed, 'the request was resumed')
  const until = Date.now() + 30_000
  while (Date.now() < until && ((await fetch(server.url + '/health')).status !== 200 || server.childPids()['worker-0-0'] === pid)) await new Promise((r) => setTimeout(r, 200))
  t.not(server.childPids()['worker-0-0'], pid, 'a new worker took its place')
  const next = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Hello', max_tokens: 4 }),
  })
  t.equal(next.status, 200, 'serving goes on')
})
