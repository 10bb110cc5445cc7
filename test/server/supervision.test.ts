/**
 * A child killed with SIGKILL is noticed and replaced. A scheduler or worker takes only its
 * data-parallel group down: that group's requests fail with a clean 503 while the other group's
 * finish. The tokenizer takes every request in flight with it.
 */
import t from 'tap'
import { startServer } from '../helpers/server.ts'

const server = await startServer({ args: ['--dp-size', '2'] })
t.teardown(() => server.stop())

interface StreamResult {
  status: number
  text: string
  ms: number
}

async function stream(prompt: string, killedAt: () => number): Promise<StreamResult> {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 600, temperature: 0, ignore_eos: true, stream: true }),
  })
  const text = await res.text()
  return { status: res.status, text, ms: Date.now() - killedAt() }
}

const failedCleanly = (r: StreamResult) => /"code":"SPANSERVE_ERR_UNAVAILABLE"/.test(r.text) && /data: \[DONE\]\n\n$/.test(r.text)
const finished = (r: StreamResult) => /"finish_reason":"length"/.test(r.text) && /data: \[DONE\]\n\n$/.test(r.text)

async function waitHealthy(ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if ((await fetch(server.url + '/health')).status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

for (const [role, scope] of [['worker-0-0', 'group'], ['scheduler-1', 'group'], ['tokenizer', 'all']] as const) {
  t.test(`kill -9 of ${role} mid-stream`, async (t) => {
    const pid = server.childPids()[role]!
    t.ok(pid > 0, `${role} has its own pid`)
    let killedAt = 0
    // Four streams: least-loaded dispatch puts two on each group.
    const pending = ['Once upon a time', 'The little girl', 'In the morning', 'The old man'].map((p) => stream(p, () => killedAt))
    await new Promise((r) => setTimeout(r, 400))
    killedAt = Date.now()
    process.kill(pid, 'SIGKILL')
    // Watch /health from the kill on: it must go red before it is green again.
    const health: number[] = []
    let watching = true
    const watcher = (async () => {
      while (watching) {
        health.push((await fetch(server.url + '/health')).status)
        await new Promise((r) => setTimeout(r, 50))
      }
    })()
    const results = await Promise.all(pending)
    t.ok(results.every((r) => r.status === 200), 'every stream had started')
    const failed = results.filter(failedCleanly)
    t.ok(failed.every((r) => r.ms < 5000), 'failed streams ended within 5 s of the kill')
    t.ok(results.every((r) => failedCleanly(r) || finished(r)), 'each stream either finished or ended with an OpenAI-shaped error event and [DONE]')
    if (scope === 'group') {
      t.equal(failed.length, 2, "the dead group's two requests failed")
      t.equal(results.filter(finished).length, 2, "the other group's two requests finished")
    } else {
      t.equal(failed.length, 4, 'every request in flight failed')
    }
    const replaced = await waitHealthy(30_000)
    watching = false
    await watcher
    t.ok(health.includes(503), `health goes red while the process restarts (seen: ${[...new Set(health)].join(', ')})`)
    t.ok(replaced, 'health is green again')
    t.not(server.childPids()[role], pid, 'a new process took its place')
    const after = await Promise.all(['Hello', 'Hi there'].map((p) => stream(p, () => Date.now())))
    t.ok(after.every(finished), 'the next requests succeed')
  })
}
