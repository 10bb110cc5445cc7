/** A client that hangs up mid-stream aborts its request: the scheduler drops it and frees its KV. */
import t from 'tap'
import { request } from 'node:http'
import { OBSERVED, sharedServer } from '../helpers/shared-server.ts'
import { parseExposition, type Exposition } from '../helpers/prometheus.ts'

// OBSERVED reports every 50 ms, so that the gauges of /metrics follow the request closely.
const server = await sharedServer(OBSERVED)

const metrics = async (): Promise<Exposition> => parseExposition(await (await fetch(server.url + '/metrics')).text())

/** Polls /metrics until `pred` holds; the last exposition read, or null after `ms`. */
async function metricsUntil(pred: (m: Exposition) => boolean, ms = 10_000): Promise<Exposition | null> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const m = await metrics()
    if (pred(m)) return m
    await new Promise((r) => setTimeout(r, 50))
  }
  return null
}
const kvHeld = (m: Exposition) => m.sum('spanserve:kv_cache_usage_perc') > 0 && m.sum('spanserve:num_requests_running') === 1 && m.sum('spanserve:process_live_requests', { role: 'worker' }) === 1
const kvFreed = (m: Exposition) => m.sum('spanserve:kv_cache_usage_perc') === 0 && m.sum('spanserve:num_requests_running') === 0 && m.sum('spanserve:process_live_requests', { role: 'worker' }) === 0

t.test('hang up after the first chunk', async (t) => {
  t.ok(kvFreed(await metrics()), 'nothing holds KV before the request')
  const body = JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 1500, ignore_eos: true, stream: true })
  await new Promise<void>((resolve, reject) => {
    const req = request(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      t.equal(res.statusCode, 200)
      res.once('data', () => {
        // Hang up once /metrics shows the request holding KV in the scheduler and the worker.
        void metricsUntil(kvHeld, 5_000).then((held) => {
          t.ok(held, 'while it streams, the request holds KV (scheduler budget, worker sequence)')
          req.destroy()
          resolve()
        }, reject)
      })
    })
    req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)))
    req.end(body)
  })
  const aborted = await server.waitForLog((l) => l.msg === 'request aborted' && l.role === 'scheduler', 10_000)
  t.equal(aborted.reason, 'client disconnected')
  // The next step releases it from the worker's KV cache: the gauges go back to nothing held.
  t.ok(await metricsUntil(kvFreed), 'its KV is freed: no budget reserved, nothing running, no sequence in the worker')
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 3 }) })
  t.equal(res.status, 200, 'the server keeps serving')
})
