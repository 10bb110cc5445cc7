/** A full queue answers 429 with Retry-After; --request-timeout ends a long request and frees its KV. */
import t from 'tap'
import { startServer } from '../../harness/server.ts'

const server = await startServer({ args: ['--max-batch-size', '1', '--max-queue', '1', '--request-timeout', '3', '--log-level', 'debug'] })
t.teardown(() => server.stop())

const post = (body: object) =>
  fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', temperature: 0, ignore_eos: true, ...body }),
  })

t.test('a full queue answers 429 with Retry-After in OpenAI shape', async (t) => {
  // One running (batch size 1), one waiting (queue of 1): the third has no room.
  const running = await post({ prompt: 'Once upon a time', max_tokens: 400, stream: true })
  const reader = running.body!.getReader()
  await reader.read() // it has started
  const waiting = post({ prompt: 'The little girl', max_tokens: 4 })
  await new Promise((r) => setTimeout(r, 100))
  const refused = await post({ prompt: 'In the morning', max_tokens: 4 })
  t.equal(refused.status, 429)
  t.equal(refused.headers.get('retry-after'), '1')
  const body = (await refused.json()) as { error: { code: string; type: string } }
  t.equal(body.error.code, 'SPANSERVE_ERR_QUEUE_FULL')
  t.equal(body.error.type, 'rate_limit_error')
  await reader.cancel()
  t.equal((await waiting).status, 200, 'the waiting request is served once the running one goes')
})

t.test('--request-timeout ends a request that runs too long and frees its KV', async (t) => {
  const started = Date.now()
  const res = await post({ prompt: 'Once upon a time', max_tokens: 1800 })
  const elapsed = Date.now() - started
  t.equal(res.status, 504)
  const body = (await res.json()) as { error: { code: string; type: string } }
  t.equal(body.error.code, 'SPANSERVE_ERR_TIMEOUT')
  t.ok(elapsed >= 3000, `ended after the limit (${elapsed} ms)`)
  const aborted = await server.waitForLog((l) => l.msg === 'request aborted' && l.reason === 'SPANSERVE_ERR_TIMEOUT', 5000)
  t.ok(aborted, 'the scheduler dropped it')
  await server.waitForLog((l) => l.msg === 'step' && (l.release as number) > 0 && (l.step as number) > 0, 5000)
  const next = await post({ prompt: 'Hello', max_tokens: 3 })
  t.equal(next.status, 200, 'the next request runs: the batch slot and KV were freed')
})

t.test('a streamed request that times out ends with an error event', async (t) => {
  const res = await post({ prompt: 'Once upon a time', max_tokens: 1800, stream: true })
  const text = await res.text()
  t.equal(res.status, 200)
  t.match(text, /"code":"SPANSERVE_ERR_TIMEOUT"/)
  t.match(text, /data: \[DONE\]\n\n$/)
})
