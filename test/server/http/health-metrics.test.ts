/**
 * GET /health and GET /metrics through inject(): health follows the launcher and shows each
 * process's report; metrics count what the routes finished and refused, in Prometheus text or
 * OpenMetrics, open unless --protect-metrics.
 */
import t from 'tap'
import { errorOf, post, processStats, scriptedApp } from '../../helpers/scripted-app.ts'
import { fail, tokens } from '../../helpers/scripted-engine.ts'
import { parseExposition } from '../../helpers/prometheus.ts'

t.test("/health: 200 with every process and each one's report while all are ready; 503 in OpenAI shape otherwise", async (t) => {
  const { app, launcher, metrics } = await scriptedApp(t)
  metrics.onProcessStats(
    processStats({ role: 'scheduler', pid: 102, liveRequests: 2, scheduler: { running: 1, waiting: 1, kvUsedTokens: 10, kvTotalTokens: 100, batchSizes: Int32Array.of(1), cacheTokens: 48 } }),
  )
  metrics.onProcessStats(processStats({ role: 'worker', pid: 103, rssBytes: 5e8, worker: { cachedTokens: 64, sequences: 1, cacheBlocks: 4 } }))
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.status, 'ok')
  t.strictSame(body.processes, launcher.processes)
  t.same(
    body.reports.map((r: { role: string }) => r.role),
    ['server', 'scheduler', 'worker'],
  )
  t.equal(body.reports[0].pid, process.pid, "the server's own report first")
  t.strictSame(body.reports[1], {
    role: 'scheduler',
    dp_rank: 0,
    tp_rank: 0,
    pid: 102,
    live_requests: 2,
    trace_contexts_open: 0,
    rss_bytes: 1e8,
    heap_used_bytes: 1e7,
    external_bytes: 1e6,
    prefix_cache_tokens: 48,
  })
  t.match(body.reports[2], { role: 'worker', pid: 103, rss_bytes: 5e8, kv_blocks: 4 })
  launcher.ready = false
  launcher.processes[2]!.ready = false
  const down = await app.inject({ method: 'GET', url: '/health' })
  t.equal(down.statusCode, 503)
  t.match(errorOf(down), { code: 'SPANSERVE_ERR_UNAVAILABLE', type: 'server_error' })
  t.equal(down.json().processes[2].ready, false, 'which process is not ready')
})

t.test('/metrics: finished requests by finish reason, token totals and latencies; refusals by code', async (t) => {
  const { app, engine, metrics } = await scriptedApp(t)
  engine.script = () => tokens(['a', 'b', 'c'], 'length')
  await post(app, '/v1/completions', { model: 'default', prompt: 'one two', max_tokens: 3 })
  engine.script = () => tokens(['a'], 'stop')
  await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'hi' }], stream: true })
  await post(app, '/v1/completions', { model: 'gpt-9', prompt: 'x' })
  await post(app, '/v1/completions', { model: 'default', prompt: 'x', temperature: 9 })
  engine.script = () => [fail('SPANSERVE_ERR_POISON_REQUEST', 'crashed twice')]
  await post(app, '/v1/completions', { model: 'default', prompt: 'x' })
  metrics.onProcessStats(processStats({ role: 'scheduler', scheduler: { running: 3, waiting: 2, kvUsedTokens: 25, kvTotalTokens: 100, batchSizes: Int32Array.of(3, 3) } }))
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const m = parseExposition(res.body)
  t.equal(m.sum('spanserve:request_success_total', { finished_reason: 'length' }), 1)
  t.equal(m.sum('spanserve:request_success_total', { finished_reason: 'stop' }), 1)
  t.equal(m.sum('spanserve:prompt_tokens_total'), 3)
  t.equal(m.sum('spanserve:generation_tokens_total'), 4)
  t.equal(m.sum('spanserve:e2e_request_latency_seconds_count'), 2)
  t.equal(m.sum('spanserve:time_to_first_token_seconds_count'), 2)
  t.equal(m.sum('spanserve:inter_token_latency_seconds_count'), 2, 'the gaps between the three tokens of the first')
  t.equal(m.sum('spanserve:request_queue_time_seconds_count'), 2)
  t.equal(m.sum('spanserve:request_failure_total', { code: 'SPANSERVE_ERR_MODEL_NOT_FOUND' }), 1)
  t.equal(m.sum('spanserve:request_failure_total', { code: 'SPANSERVE_ERR_VALIDATION' }), 1)
  t.equal(m.sum('spanserve:request_failure_total', { code: 'SPANSERVE_ERR_POISON_REQUEST' }), 1)
  t.equal(m.sum('spanserve:client_requests_total', { client: 'ip:127.0.0.1' }), 2)
  t.equal(m.sum('spanserve:num_requests_running'), 3, "the scheduler's report")
  t.equal(m.sum('spanserve:kv_cache_usage_perc'), 0.25)
  t.equal(m.sum('spanserve:batch_size_count'), 2)
  const om = await app.inject({ method: 'GET', url: '/metrics', headers: { accept: 'application/openmetrics-text; version=1.0.0' } })
  t.match(om.headers['content-type'], /^application\/openmetrics-text/)
  t.match(om.body, /# EOF\n$/)
})

t.test('/metrics is open, with an API key too; --protect-metrics puts it behind the admin key', async (t) => {
  const open = await scriptedApp(t, { env: { SPANSERVE_API_KEY: 'sk-api' } })
  t.equal((await open.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200)
  t.equal((await open.app.inject({ method: 'GET', url: '/health' })).statusCode, 200, '/health is open too')
  const guarded = await scriptedApp(t, { argv: ['--protect-metrics'], env: { SPANSERVE_API_KEY: 'sk-api', SPANSERVE_ADMIN_API_KEY: 'sk-admin' } })
  const as = (key: string) => ({ authorization: `Bearer ${key}` })
  t.equal((await guarded.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401)
  t.equal((await guarded.app.inject({ method: 'GET', url: '/metrics', headers: as('sk-api') })).statusCode, 401, 'the API key is not the admin key')
  t.equal((await guarded.app.inject({ method: 'GET', url: '/metrics', headers: as('sk-admin') })).statusCode, 200)
  t.equal((await guarded.app.inject({ method: 'GET', url: '/health' })).statusCode, 200, '/health stays open')
})
