/**
 * The router's HTTP side against scripted instances (plain node:http servers, no model): OpenAI's
 * error body for what the router refuses itself, the client's bytes and trace context passed on,
 * a retry on another instance when the first fails before any byte, 503 with no healthy instance,
 * SSE passed through chunk by chunk, and its /health and /metrics.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { parseConfig } from '../../src/config/parse.ts'
import { tracingOptions } from '../../src/config/tracing.ts'
import { createLogger } from '../../src/logging.ts'
import { flushTracing, initTracing, shutdownTracing } from '../../src/tracing/index.ts'
import { buildRouterApp } from '../../src/router/app.ts'
import { InstanceSet } from '../../src/router/instances.ts'
import { RouterMetrics } from '../../src/router/metrics.ts'
import { RouterProxy } from '../../src/router/proxy.ts'
import { parseExposition } from '../helpers/prometheus.ts'

const KEY = 'sk-router-' + 'k'.repeat(20)

interface Seen {
  url: string
  headers: IncomingMessage['headers']
  body: string
}

/** A scripted instance: /health 200, and `handle` for everything else (default: JSON naming itself). */
async function instance(name: string, handle?: (req: IncomingMessage, res: ServerResponse, body: string) => void) {
  const seen: Seen[] = []
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString('utf8')))
    req.on('end', () => {
      if (req.url === '/health') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      seen.push({ url: req.url!, headers: req.headers, body })
      if (handle) return handle(req, res, body)
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ served_by: name }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))))
  return { url, seen, server }
}

async function router(urls: string[], apiKey = '', traceExcludeUrls: string[] | null = null) {
  const log = createLogger('silent', {})
  const instances = new InstanceSet({ urls, dns: null, resolve: async () => [], healthIntervalMs: 60_000, healthTimeoutMs: 1000, dnsIntervalMs: 60_000, maxTreeChars: 1 << 20, log })
  const metrics = new RouterMetrics(() => instances.list())
  const proxy = new RouterProxy({ instances, policy: { cacheThreshold: 0.3, balanceAbsThreshold: 64, balanceRelThreshold: 1.5 }, metrics, log, apiKeyConfigured: apiKey !== '' })
  const app = await buildRouterApp({
    log,
    apiKey,
    perimeter: { headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000, maxHeaders: 100, maxConnectionsPerClient: 256 },
    bodyLimit: 64 * 1024,
    traceExcludeUrls,
    isShuttingDown: () => false,
    instances,
    metrics,
    proxy,
  })
  await instances.start()
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    instances.stop()
    await app.close()
  })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    instances,
    metrics: async () => parseExposition(await (await fetch(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/metrics`)).text()),
  }
}

const post = (url: string, body: string | object, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })

t.test("what the router refuses itself, in OpenAI's error body", async (t) => {
  const a = await instance('a')
  const r = await router([a.url], KEY)
  const auth = { authorization: `Bearer ${KEY}` }
  const cases: [string, Promise<Response>, number, string][] = [
    ['unknown route', fetch(r.url + '/v1/nothing', { headers: auth }), 404, 'SPANSERVE_ERR_NOT_FOUND'],
    ['bad JSON', post(r.url + '/v1/completions', '{"prompt": ', auth), 400, 'SPANSERVE_ERR_INVALID_REQUEST'],
    ['no key', post(r.url + '/v1/completions', { prompt: 'x' }), 401, 'SPANSERVE_ERR_UNAUTHORIZED'],
    ['wrong key', post(r.url + '/v1/chat/completions', { messages: [] }, { authorization: 'Bearer nope' }), 401, 'SPANSERVE_ERR_UNAUTHORIZED'],
    ['no key on /v1/models', fetch(r.url + '/v1/models'), 401, 'SPANSERVE_ERR_UNAUTHORIZED'],
    ['over the body limit', post(r.url + '/v1/completions', { prompt: 'x'.repeat(70 * 1024) }, auth), 413, 'SPANSERVE_ERR_BODY_TOO_LARGE'],
    ['not JSON', fetch(r.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'text/plain', ...auth }, body: 'hi' }), 415, 'SPANSERVE_ERR_MEDIA_TYPE'],
  ]
  for (const [what, pending, status, code] of cases) {
    const res = await pending
    const body = (await res.json()) as { error: { code: string; message: string; type: string } }
    t.equal(res.status, status, what)
    t.equal(body.error.code, code, what)
    t.type(body.error.message, 'string')
  }
  t.equal(a.seen.length, 0, 'the instance saw none of them')
  t.equal((await fetch(r.url + '/health')).status, 200, '/health is open')
  t.equal((await fetch(r.url + '/metrics')).status, 200, '/metrics is open')
})

t.test("the client's bytes, trace context and identity go to the instance; its answer comes back", async (t) => {
  const a = await instance('a')
  const r = await router([a.url])
  const raw = '{"model":"default",  "prompt":"Once upon a time"}'
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const res = await post(r.url + '/v1/completions?x=1', raw, { traceparent, tracestate: 'k=v', 'x-spanserve-client': 'tenant-7' })
  t.equal(res.status, 200)
  t.same(await res.json(), { served_by: 'a' })
  const seen = a.seen[0]!
  t.equal(seen.url, '/v1/completions?x=1')
  t.equal(seen.body, raw, 'the body byte for byte')
  t.equal(seen.headers.traceparent, traceparent, 'with tracing off, traceparent passes unchanged')
  t.equal(seen.headers.tracestate, 'k=v')
  t.equal(seen.headers['x-spanserve-client'], 'tenant-7', 'a named client keeps its name')
  await post(r.url + '/v1/completions', { prompt: 'x' })
  t.equal(a.seen[1]!.headers['x-spanserve-client'], 'ip:127.0.0.1', 'else the client is named by its address, not the router’s')
  const models = await fetch(r.url + '/v1/models')
  t.same(await models.json(), { served_by: 'a' }, 'GET /v1/models passes through')
  t.equal(a.seen[2]!.url, '/v1/models')
})

t.test('an instance that fails before any byte: the request is served by another, the failed one gets no more', async (t) => {
  // "a" accepts the connection and resets it without a byte of answer.
  const a = await instance('a', (req) => req.socket.destroy())
  const b = await instance('b')
  const r = await router([a.url, b.url])
  const res = await post(r.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'hello' }] })
  t.equal(res.status, 200)
  const first = (await res.json()) as { served_by: string }
  // All idle and empty: the first instance listed is chosen first, fails, and b serves the request.
  t.equal(first.served_by, 'b')
  t.equal(a.seen.length, 1, 'a was tried first')
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_retries_total'), 1)
  t.equal(m.sum('spanserve:router_upstream_failures_total', { instance: a.url }), 1)
  t.equal(m.sum('spanserve:router_instance_healthy', { instance: a.url }), 0, 'a is marked down at once')
  // Other conversations: a is down, so b serves them without a retry.
  for (let i = 0; i < 3; i++) t.equal((await post(r.url + '/v1/completions', { prompt: `other ${i}` })).status, 200)
  t.equal(a.seen.length, 1, 'a got no request after it failed')
})

t.test('no healthy instance: 503 in OpenAI shape with Retry-After', async (t) => {
  const a = await instance('a')
  await new Promise<void>((res) => (a.server.closeAllConnections(), a.server.close(() => res())))
  const r = await router([a.url])
  const res = await post(r.url + '/v1/completions', { prompt: 'x' })
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '1')
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'SPANSERVE_ERR_UNAVAILABLE')
  t.equal((await fetch(r.url + '/health')).status, 503, "the router's /health is red with no healthy instance")
})

t.test('SSE passes through chunk by chunk, not buffered', async (t) => {
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const a = await instance('a', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: {"n":1}\n\n')
    // The second chunk is written only once the client has read the first through the router.
    void released.then(() => res.end('data: {"n":2}\n\ndata: [DONE]\n\n'))
  })
  const r = await router([a.url])
  const res = await post(r.url + '/v1/completions', { prompt: 'x', stream: true })
  t.equal(res.headers.get('content-type'), 'text/event-stream')
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  const first = decoder.decode((await reader.read()).value)
  t.equal(first, 'data: {"n":1}\n\n', 'the first event arrives while the instance holds back the rest')
  release()
  let rest = ''
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += decoder.decode(chunk.value)
  t.equal(rest, 'data: {"n":2}\n\ndata: [DONE]\n\n')
  t.equal(a.seen.length, 1)
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_instance_in_flight'), 0, 'the load is released once the stream ended')
  t.equal(m.sum('spanserve:router_requests_total', { instance: a.url }), 1)
})

t.test("with tracing on, the instance's trace continues under the router's span", async (t) => {
  const lines: string[] = []
  const { config } = parseConfig(['--trace-enable', '--trace-exporter', 'console'], {})
  await initTracing(tracingOptions(config), { role: 'server' }, { consoleWrite: (line) => lines.push(line) })
  t.teardown(shutdownTracing)
  const a = await instance('a')
  const r = await router([a.url], '', [])
  const traceId = '0af7651916cd43dd8448eb211c80319c'
  const res = await post(r.url + '/v1/completions', { prompt: 'x' }, { traceparent: `00-${traceId}-b7ad6b7169203331-01` })
  t.equal(res.status, 200)
  await res.arrayBuffer()
  const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(a.seen[0]!.headers.traceparent))
  t.ok(sent, 'the instance got a traceparent')
  t.equal(sent![1], traceId, "in the caller's trace")
  t.not(sent![2], 'b7ad6b7169203331', "under the router's own span, not the caller's")
  await flushTracing()
  const span = lines.find((l) => l.includes('router_request'))
  t.ok(span?.includes(sent![2]!), `the router_request span is the instance's parent: ${span}`)
})
