/**
 * A process that hangs without exiting (here: stopped with SIGSTOP) stops sending its periodic
 * report; the watchdog kills it after --hang-timeout, its requests fail cleanly, and it is replaced.
 */
import t from 'tap'
import { startServer } from '../helpers/server.ts'

const server = await startServer({ args: ['--hang-timeout', '3', '--stats-interval', '0.5'] })
t.teardown(() => server.stop())

t.test('a stopped worker is killed and replaced; its stream ends with a 503 event', async (t) => {
  const pid = server.childPids()['worker-0-0']!
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 1500, temperature: 0, ignore_eos: true, stream: true }),
  })
  const reader = res.body!.getReader()
  await reader.read()
  const stoppedAt = Date.now()
  process.kill(pid, 'SIGSTOP')
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString()
  }
  const ms = Date.now() - stoppedAt
  t.match(text, /"code":"SPANSERVE_ERR_UNAVAILABLE"/, 'the stream ends with an error event')
  t.match(text, /data: \[DONE\]\n\n$/)
  // Silence is counted from the last report, up to one --stats-interval (0.5 s) before the stop.
  t.ok(ms >= 2500 && ms < 20_000, `ended after the hang timeout (${ms} ms)`)
  const hung = await server.waitForLog((l) => l.msg === 'process hung; killing it' && l.child === 'worker-0-0', 5000)
  t.equal(hung.child_pid, pid)
  const until = Date.now() + 30_000
  while (Date.now() < until && ((await fetch(server.url + '/health')).status !== 200 || server.childPids()['worker-0-0'] === pid)) await new Promise((r) => setTimeout(r, 200))
  t.not(server.childPids()['worker-0-0'], pid, 'a new worker took its place')
  const next = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Hello', max_tokens: 4 }) })
  t.equal(next.status, 200, 'serving resumes')
})
