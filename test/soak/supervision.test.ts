/**
 * A child killed with SIGKILL is noticed and replaced, and costs latency, not answers. A scheduler or
 * worker takes only its data-parallel group down: that group's requests are resumed on the other
 * group, from the tokens they had sent, while the other group's go on. The tokenizer takes every
 * request in flight with it: all are resumed once it is back. Every stream ends as the same request
 * ends without a fault: same text, no error event, every token counted once.
 */
import t from 'tap'
import { startServer } from '../../harness/server.ts'

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
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 600, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  })
  const text = await res.text()
  return { status: res.status, text, ms: Date.now() - killedAt() }
}

const finished = (r: StreamResult) => /"finish_reason":"length"/.test(r.text) && /data: \[DONE\]\n\n$/.test(r.text) && !/"error"/.test(r.text)
/** The streamed text, chunk by chunk joined. */
const textOf = (r: StreamResult) =>
  r.text
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => (JSON.parse(l.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '')
    .join('')
const PROMPTS = ['Once upon a time', 'The little girl', 'In the morning', 'The old man']
// The fault-free answers (greedy), to hold the resumed ones against.
const reference = await Promise.all(PROMPTS.map((p) => stream(p, () => Date.now())))

async function waitHealthy(ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if ((await fetch(server.url + '/health')).status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

for (const [role, scope] of [
  ['worker-0-0', 'group'],
  ['scheduler-1', 'group'],
  ['tokenizer', 'all'],
] as const) {
  t.test(`kill -9 of ${role} mid-stream`, async (t) => {
    const pid = server.childPids()[role]!
    t.ok(pid > 0, `${role} has its own pid`)
    let killedAt = 0
    // Four streams: least-loaded dispatch puts two on each group.
    const pending = PROMPTS.map((p) => stream(p, () => killedAt))
    const logsBefore = server.logs.length
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
    t.ok(
      results.every((r) => r.status === 200),
      'every stream had started',
    )
    t.ok(results.every(finished), 'every stream finished, with no error event, and [DONE]')
    t.same(results.map(textOf), reference.map(textOf), 'each stream is the text of the same request without a fault: nothing repeated, nothing missing')
    const usage = (r: StreamResult) =>
      /"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(
        r.text
          .split('\n')
          .filter((l) => l.startsWith('data: {'))
          .at(-1) ?? '',
      )?.[1]
    t.same(results.map(usage), ['600', '600', '600', '600'], 'usage counts each token once')
    const resumed = server.logs.slice(logsBefore).filter((l) => l.msg === 'request resumed')
    t.ok(
      resumed.every((l) => l.process === role && l.process_pid === pid),
      'the resumes name the dead process',
    )
    if (scope === 'group') t.equal(resumed.length, 2, "the dead group's two requests were resumed")
    else t.equal(resumed.length, 4, 'every request in flight was resumed')
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
