/** A client that hangs up mid-stream aborts its request: the scheduler drops it and frees its KV. */
import t from 'tap'
import { request } from 'node:http'
import { startServer } from '../helpers/server.ts'

const server = await startServer({ args: ['--log-level', 'debug'] })
t.teardown(() => server.stop())

t.test('hang up after the first chunk', async (t) => {
  const body = JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 1000, stream: true })
  await new Promise<void>((resolve, reject) => {
    const req = request(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      t.equal(res.statusCode, 200)
      res.once('data', () => {
        req.destroy()
        resolve()
      })
    })
    req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)))
    req.end(body)
  })
  const aborted = await server.waitForLog((l) => l.msg === 'request aborted' && l.role === 'scheduler', 10_000)
  t.equal(aborted.reason, 'client disconnected')
  // The next step releases it from the worker's KV cache.
  await server.waitForLog((l) => l.msg === 'step' && (l.release as number) > 0, 10_000)
  const steps = server.logs.filter((l) => l.msg === 'step')
  const last = steps.at(-1)!
  t.equal(last.decode, 0, 'nothing is decoding any more')
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 3 }) })
  t.equal(res.status, 200, 'the server keeps serving')
})
