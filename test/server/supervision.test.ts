/** A child killed with SIGKILL is noticed, its requests fail cleanly, and it is replaced. */
import t from 'tap'
import { startServer } from '../helpers/server.ts'

const server = await startServer()
t.teardown(() => server.stop())

async function streamUntilEnd(prompt: string): Promise<{ status: number; text: string }> {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 1500, temperature: 0, ignore_eos: true, stream: true }),
  })
  return { status: res.status, text: await res.text() }
}

async function waitHealthy(ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if ((await fetch(server.url + '/health')).status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

for (const role of ['worker-0-0', 'scheduler-0', 'tokenizer']) {
  t.test(`kill -9 of the ${role} mid-stream`, async (t) => {
    const pid = server.childPids()[role]!
    t.ok(pid > 0, `${role} has its own pid`)
    const pending = streamUntilEnd('Once upon a time')
    await new Promise((r) => setTimeout(r, 300))
    const killedAt = Date.now()
    process.kill(pid, 'SIGKILL')
    const { status, text } = await pending
    t.ok(Date.now() - killedAt < 5000, 'the stream ended within 5 s')
    t.equal(status, 200, 'the stream had started')
    t.match(text, /"code":"SPANSERVE_ERR_UNAVAILABLE"/, `it ends with an OpenAI-shaped error event (stream tail: ${text.slice(-300)})`)
    t.match(text, /data: \[DONE\]\n\n$/, 'and the stream is closed properly')
    const red = await fetch(server.url + '/health')
    const replaced = await waitHealthy(30_000)
    t.ok(red.status === 503 || replaced, 'health goes red while the process restarts')
    t.ok(replaced, 'health is green again')
    t.not(server.childPids()[role], pid, 'a new process took its place')
    const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Hello', max_tokens: 5 }) })
    t.equal(res.status, 200, 'the next request succeeds')
  })
}
