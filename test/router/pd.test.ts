/**
 * The router's side of prefill/decode disaggregation, against scripted instances (plain node:http
 * servers standing in for instances started with --disaggregation-mode; the end-to-end test with
 * real instances is test/router/disaggregation.test.ts): the flags and what they refuse, health by
 * role (a mode that is not the instance's role keeps it out; a decode instance's bootstrap port is
 * recorded), the two bodies of a pair (one room, the decode instance's host and port, the prefill
 * one not streamed), the decode answer streamed through, a prefill retry with the same room, a
 * decode retry as a new pair, other routes to a decode instance, and the Bootstrap Room span that
 * both instances' traces sit under.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import t from 'tap'
import { ConfigError } from '../../src/config/config-error.ts'
import { parseConfig } from '../../src/config/parse.ts'
import { tracingOptions } from '../../src/config/tracing.ts'
import { createLogger } from '../../src/logging.ts'
import { buildRouterApp } from '../../src/router/app.ts'
import { parseRouterConfig } from '../../src/router/config.ts'
import { type InstanceRole, InstanceSet } from '../../src/router/instances.ts'
import { RouterMetrics } from '../../src/router/metrics.ts'
import { bootstrapRoomSpanName, newBootstrapRoom, pairBodies, RouterProxy } from '../../src/router/proxy.ts'
import { flushTracing, initTracing, shutdownTracing } from '../../src/tracing/index.ts'
import { parseExposition } from '../helpers/prometheus.ts'

interface Seen {
  url: string
  headers: IncomingMessage['headers']
  body: Record<string, unknown>
  /** Resolves when the request's connection closed before it was answered. */
  closedEarly: Promise<boolean>
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void

/** A scripted instance whose /health reports `mode` (and a bootstrap port on decode); `handle` answers the rest (default: JSON naming itself). */
async function instance(
  name: string,
  mode: 'prefill' | 'decode' | 'null' | 'none',
  handle?: Handler,
  bootstrapPort: number | null = mode === 'decode' ? 40000 + Math.floor(Math.random() * 1000) : null,
) {
  const seen: Seen[] = []
  const server: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')))
    req.on('end', () => {
      if (req.url === '/health') {
        const body = mode === 'none' ? {} : { status: 'ok', disaggregation: { mode, bootstrap_port: bootstrapPort } }
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      }
      const closedEarly = new Promise<boolean>((resolve) => res.once('close', () => resolve(!res.writableFinished)))
      const body = raw === '' ? {} : (JSON.parse(raw) as Record<string, unknown>)
      seen.push({ url: req.url!, headers: req.headers, body, closedEarly })
      if (handle) return handle(req, res, body)
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ served_by: name }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))))
  return { name, url, seen, server, bootstrapPort }
}

const log = createLogger('silent', {})

function set(urls: string[], role: InstanceRole) {
  return new InstanceSet({ urls, dns: null, resolve: async () => [], healthIntervalMs: 60_000, healthTimeoutMs: 1000, dnsIntervalMs: 60_000, maxTreeChars: 1 << 20, log, role })
}

/** A router in PD mode in this process (as main.ts wires it). */
async function router(prefillUrls: string[], decodeUrls: string[], traceExcludeUrls: string[] | null = null) {
  const decode = set(decodeUrls, 'decode')
  const prefill = set(prefillUrls, 'prefill')
  const metrics = new RouterMetrics(() => [...prefill.list(), ...decode.list()])
  const proxy = new RouterProxy({ instances: decode, prefill, policy: { cacheThreshold: 0.3, balanceAbsThreshold: 64, balanceRelThreshold: 1.5 }, metrics, log, apiKeyConfigured: false })
  const app = await buildRouterApp({
    log,
    apiKey: '',
    perimeter: { headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000, maxHeaders: 100, maxConnectionsPerClient: 256 },
    bodyLimit: 64 * 1024,
    traceExcludeUrls,
    isShuttingDown: () => false,
    instances: decode,
    prefill,
    metrics,
    proxy,
  })
  await Promise.all([decode.start(), prefill.start()])
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    decode.stop()
    prefill.stop()
    await app.close()
    proxy.close()
  })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  return { url, decode, prefill, metrics: async () => parseExposition(await (await fetch(url + '/metrics')).text()) }
}

const post = (url: string, body: object) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

t.test('flags: --prefill and --decode (or their DNS forms) make a PD router; mixing with --instance is refused', async (t) => {
  const { config } = parseRouterConfig(['--prefill', 'http://p1:8000', '--prefill', 'http://p2:8000', '--decode', 'http://d1:8000'], {})
  t.same(config.pd, { prefill: { urls: ['http://p1:8000', 'http://p2:8000'], dns: null }, decode: { urls: ['http://d1:8000'], dns: null } })
  const dns = parseRouterConfig(['--prefill-dns', 'prefill.ns.svc:8000', '--decode-dns=decode.ns.svc:8001'], {}).config.pd
  t.same(dns, { prefill: { urls: [], dns: { name: 'prefill.ns.svc', port: 8000 } }, decode: { urls: [], dns: { name: 'decode.ns.svc', port: 8001 } } })
  const env = parseRouterConfig([], { SPANSERVE_ROUTER_PREFILL: 'http://p1:8000, http://p2:8000', SPANSERVE_ROUTER_DECODE_DNS: 'decode:8000' }).config.pd
  t.same(env?.prefill.urls, ['http://p1:8000', 'http://p2:8000'], 'SPANSERVE_ROUTER_PREFILL: a comma-separated list')
  t.same(env?.decode.dns, { name: 'decode', port: 8000 })
  t.equal(parseRouterConfig(['--instance', 'http://a:8000'], {}).config.pd, null, 'whole instances: no PD')

  const refused = (argv: string[], env: NodeJS.ProcessEnv, message: RegExp, what: string) => t.throws(() => parseRouterConfig(argv, env), { constructor: ConfigError, message }, what)
  refused(['--instance', 'http://a:8000', '--prefill', 'http://p:8000', '--decode', 'http://d:8000'], {}, /cannot be mixed/, '--instance with --prefill/--decode')
  refused(['--prefill', 'http://p:8000', '--decode', 'http://d:8000'], { SPANSERVE_ROUTER_INSTANCES_DNS: 'x:1' }, /cannot be mixed/, 'an --instances-dns variable with --prefill/--decode')
  refused(['--prefill', 'http://p:8000'], {}, /needs both a prefill source .* and a decode source .*only prefill was given/, 'prefill alone')
  refused(['--decode-dns', 'd:8000'], {}, /only decode was given/, 'decode alone')
  refused(['--prefill', 'p:8000', '--decode', 'http://d:8000'], {}, /--prefill: expected a base URL/, 'a --prefill that is no URL')
  refused(['--prefill', 'http://p:8000', '--decode-dns', 'decode'], {}, /--decode-dns: expected NAME:PORT/, 'a --decode-dns without a port')
  refused([], {}, /no instances: .*--prefill and --decode/, 'nothing')
})

t.test('health by role: a mode other than the role keeps an instance out (logged once); a decode instance needs its bootstrap port', async (t) => {
  const p = await instance('p', 'prefill')
  const d = await instance('d', 'decode')
  const noPort = await instance('d-no-port', 'decode', undefined, null)
  const old = await instance('old', 'none')
  const lines: Record<string, unknown>[] = []
  const logged = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const set = (urls: string[], role?: 'prefill' | 'decode') =>
    new InstanceSet({ urls, dns: null, resolve: async () => [], healthIntervalMs: 60_000, healthTimeoutMs: 1000, dnsIntervalMs: 60_000, maxTreeChars: 1024, log: logged, ...(role ? { role } : {}) })
  const sets = {
    prefill: set([p.url, d.url, old.url], 'prefill'),
    decode: set([d.url, p.url, noPort.url], 'decode'),
    whole: set([old.url, p.url]),
  }
  for (const s of Object.values(sets)) await s.start()
  t.teardown(() => {
    for (const s of Object.values(sets)) s.stop()
  })
  const healthy = (s: InstanceSet) => s.healthy().map((i) => i.url)
  t.same(healthy(sets.prefill), [p.url], 'as --prefill: only the instance reporting mode prefill')
  t.same(healthy(sets.decode), [d.url], 'as --decode: only the decode instance that reports its bootstrap port')
  t.same(healthy(sets.whole), [old.url], 'as --instance: one reporting no disaggregation (mode null) is up, a prefill instance is not')
  t.equal(sets.decode.list().find((i) => i.url === d.url)!.bootstrapPort, d.bootstrapPort, "the decode instance's bootstrap port is recorded")
  const reasons = Object.fromEntries(sets.prefill.list().map((i) => [i.url, i.unhealthyReason]))
  t.match(reasons[d.url], /reports disaggregation mode "decode", but it was given as --prefill/)
  t.match(reasons[old.url], /reports disaggregation mode "null", but it was given as --prefill/)
  t.match(sets.decode.list().find((i) => i.url === noPort.url)!.unhealthyReason, /no disaggregation.bootstrap_port/)
  const warnings = lines.filter((l) => l.msg === 'instance unhealthy')
  t.equal(warnings.length, 5, 'each mismatch logged')
  // A second round of checks changes nothing: nothing more is logged.
  await (sets.prefill as unknown as { checkAll(): Promise<void> }).checkAll()
  t.equal(lines.filter((l) => l.msg === 'instance unhealthy').length, 5, 'and logged once, not at every check')
})

t.test('the bodies of a pair', async (t) => {
  const room = newBootstrapRoom()
  const { prefill, decode } = pairBodies({ model: 'default', prompt: 'hi', stream: true, stream_options: { include_usage: true }, bootstrap_room: 7 }, '10.0.0.9', 8998, room)
  t.same(JSON.parse(decode.toString()), {
    model: 'default',
    prompt: 'hi',
    stream: true,
    stream_options: { include_usage: true },
    bootstrap_room: room,
    bootstrap_host: '10.0.0.9',
    bootstrap_port: 8998,
  })
  t.same(
    JSON.parse(prefill.toString()),
    { model: 'default', prompt: 'hi', stream: false, bootstrap_room: room, bootstrap_host: '10.0.0.9', bootstrap_port: 8998 },
    'prefill: not streamed, no stream_options',
  )
  const rooms = Array.from({ length: 2000 }, newBootstrapRoom)
  t.ok(
    rooms.every((r) => Number.isSafeInteger(r) && r >= 0 && r < 2 ** 53),
    'rooms are integers in [0, 2^53)',
  )
  t.ok(Math.max(...rooms) > 2 ** 52, 'and span the range')
  t.equal(new Set(rooms).size, rooms.length)
  t.equal(bootstrapRoomSpanName(255), 'Bootstrap Room 0xff', "SGLang's name, hex(room)")
})

t.test('a pair: both requests at once, one room, the decode answer streamed to the client, the prefill one discarded', async (t) => {
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const p = await instance('p', 'prefill', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices":[{"text":"x"}]}'))
  const d = await instance('d', 'decode', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: {"n":1}\n\n')
    void released.then(() => res.end('data: {"n":2}\n\ndata: [DONE]\n\n'))
  })
  const r = await router([p.url], [d.url])
  const res = await post(r.url + '/v1/completions?x=1', { model: 'default', prompt: 'Once upon a time', max_tokens: 16, stream: true, stream_options: { include_usage: true } })
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/event-stream')
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  t.equal(decoder.decode((await reader.read()).value), 'data: {"n":1}\n\n', 'the first event arrives while the decode instance holds back the rest')
  t.equal(p.seen.length, 1, 'the prefill request was sent alongside')
  release()
  let rest = ''
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += decoder.decode(chunk.value)
  t.equal(rest, 'data: {"n":2}\n\ndata: [DONE]\n\n')
  const [ps, ds] = [p.seen[0]!, d.seen[0]!]
  t.equal(ps.url, '/v1/completions?x=1')
  t.equal(ds.url, '/v1/completions?x=1')
  const room = ds.body.bootstrap_room as number
  t.ok(Number.isSafeInteger(room) && room >= 0, `room ${room}`)
  t.equal(ps.body.bootstrap_room, room, 'the same room on both')
  for (const s of [ps, ds]) {
    t.equal(s.body.bootstrap_host, '127.0.0.1', "bootstrap_host: the decode instance's host")
    t.equal(s.body.bootstrap_port, d.bootstrapPort, 'bootstrap_port: as its /health reported it')
    t.equal(s.body.prompt, 'Once upon a time')
    t.equal(s.headers['content-length'], String(Buffer.byteLength(JSON.stringify(s.body))))
  }
  t.equal(ds.body.stream, true)
  t.same(ds.body.stream_options, { include_usage: true })
  t.equal(ps.body.stream, false, 'the prefill request is not streamed')
  t.notOk('stream_options' in ps.body)
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_bootstrap_rooms_total'), 1)
  t.equal(m.sum('spanserve:router_prefill_outcomes_total', { outcome: 'ok' }), 1)
  t.equal(m.sum('spanserve:router_requests_total', { instance: p.url }), 1)
  t.equal(m.sum('spanserve:router_requests_total', { instance: d.url }), 1)
  t.equal(m.sum('spanserve:router_decisions_total', { decision: 'cache_miss' }), 1, "the policy chose the prefill instance (the decode one is the least loaded's)")
  t.equal(m.sum('spanserve:router_instance_in_flight'), 0, 'no load left once both have ended')
  const health = (await (await fetch(r.url + '/health')).json()) as { instances: { url: string; role: string }[] }
  t.same(
    health.instances.map((i) => [i.url, i.role]),
    [
      [p.url, 'prefill'],
      [d.url, 'decode'],
    ],
    "the router's /health lists both roles",
  )
})

t.test('the decode instance is the least loaded; the prefill instance the cache-aware choice among prefill instances', async (t) => {
  const p1 = await instance('p1', 'prefill')
  const p2 = await instance('p2', 'prefill')
  const d1 = await instance('d1', 'decode')
  const d2 = await instance('d2', 'decode')
  const r = await router([p1.url, p2.url], [d1.url, d2.url])
  const conversation = 'A long shared system prompt that every turn of this conversation starts with, to be cached. '
  for (let i = 0; i < 4; i++) t.equal((await post(r.url + '/v1/completions', { prompt: conversation + `turn ${i}` })).status, 200)
  const prefills = [p1, p2].filter((p) => p.seen.length > 0)
  t.equal(prefills.length, 1, 'every turn prefilled on the instance holding its prefix')
  t.equal(prefills[0]!.seen.length, 4)
  t.same([d1.seen.length, d2.seen.length], [2, 2], 'decode: least loaded, ties in turn')
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_decisions_total', { decision: 'cache_hit' }), 3)
})

t.test('a prefill request that fails is sent once more to another prefill instance, with the same room', async (t) => {
  const p1 = await instance('p1', 'prefill', (req) => req.socket.destroy())
  const p2 = await instance('p2', 'prefill', (_req, res) => res.writeHead(500).end('{}'))
  const p3 = await instance('p3', 'prefill')
  const d = await instance('d', 'decode')
  const r = await router([p1.url, p2.url, p3.url], [d.url])
  // All idle and empty: the first listed is chosen first.
  const res = await post(r.url + '/v1/completions', { prompt: 'x' })
  t.equal(res.status, 200)
  t.same(await res.json(), { served_by: 'd' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(p1.seen.length, 1, 'p1 reset the connection')
  const retriedOn = [p2, p3].filter((p) => p.seen.length === 1)
  t.equal(retriedOn.length, 1, 'retried once, on another prefill instance')
  t.equal(retriedOn[0]!.seen[0]!.body.bootstrap_room, d.seen[0]!.body.bootstrap_room, 'with the same room')
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_upstream_failures_total', { instance: p1.url }), 1)
  t.equal(m.sum('spanserve:router_instance_healthy', { instance: p1.url }), 0, 'p1 is marked down')
  t.equal(m.sum('spanserve:router_retries_total'), 1)
  // p1 is down: the next pairs prefill on p2 (a 500: retried on p3) or p3.
  const before = p3.seen.length
  t.equal((await post(r.url + '/v1/completions', { prompt: 'y' })).status, 200, 'the client gets the decode answer whatever the prefill did')
  await new Promise((resolve) => setTimeout(resolve, 50))
  if (p2.seen.length > 0) t.equal(p3.seen.length, before + 1, 'a 5xx from p2 is retried on p3')
  t.equal(p1.seen.length, 1, 'p1 got nothing more')
})

t.test('a decode request that fails before any byte is retried as a new pair: a new room, another decode instance', async (t) => {
  // The prefill instance holds its answer until the connection closes: the failed pair's request is cancelled.
  const p = await instance('p', 'prefill', (req, res) => {
    const body = JSON.parse(JSON.stringify({ served_by: 'p' }))
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)), 300)
    void req
  })
  const d1 = await instance('d1', 'decode', (req) => req.socket.destroy())
  const d2 = await instance('d2', 'decode')
  const r = await router([p.url], [d1.url, d2.url])
  const res = await post(r.url + '/v1/chat/completions', { messages: [{ role: 'user', content: 'hello' }] })
  t.equal(res.status, 200)
  t.same(await res.json(), { served_by: 'd2' })
  t.equal(d1.seen.length, 1, 'd1 was tried first')
  t.equal(p.seen.length, 2, 'two pairs, two prefill requests')
  const [first, second] = p.seen
  t.equal(first!.body.bootstrap_room, d1.seen[0]!.body.bootstrap_room)
  t.equal(second!.body.bootstrap_room, d2.seen[0]!.body.bootstrap_room)
  t.not(first!.body.bootstrap_room, second!.body.bootstrap_room, 'a new room')
  t.equal(second!.body.bootstrap_port, d2.bootstrapPort, "the second pair's KV goes to d2")
  t.equal(await first!.closedEarly, true, "the failed pair's prefill request was cancelled")
  const m = await r.metrics()
  t.equal(m.sum('spanserve:router_bootstrap_rooms_total'), 2)
  t.equal(m.sum('spanserve:router_retries_total'), 1)
  t.equal(m.sum('spanserve:router_instance_healthy', { instance: d1.url }), 0)
  t.equal(m.sum('spanserve:router_prefill_outcomes_total', { outcome: 'cancelled' }), 1)
})

t.test('other routes go to a decode instance; no healthy prefill instance: 503', async (t) => {
  const p = await instance('p', 'decode') // reports the wrong mode: never healthy as --prefill
  const d = await instance('d', 'decode')
  const r = await router([p.url], [d.url])
  t.same(await (await fetch(r.url + '/v1/models')).json(), { served_by: 'd' })
  t.equal(d.seen[0]!.url, '/v1/models')
  const res = await post(r.url + '/v1/completions', { prompt: 'x' })
  t.equal(res.status, 503)
  t.match(((await res.json()) as { error: { message: string } }).error.message, /no healthy prefill instance/)
  t.equal(d.seen.length, 1, 'the decode instance got no generation request')
  t.equal((await fetch(r.url + '/health')).status, 503, "the router's /health is red while a role has no healthy instance")
})

t.test("with tracing on, a pair's two requests continue the trace under its Bootstrap Room span", async (t) => {
  const lines: string[] = []
  const { config } = parseConfig(['--trace-enable', '--trace-exporter', 'console'], {})
  await initTracing(tracingOptions(config), { role: 'router' }, { consoleWrite: (line) => lines.push(line) })
  t.teardown(shutdownTracing)
  const p = await instance('p', 'prefill')
  const d = await instance('d', 'decode')
  const r = await router([p.url], [d.url], [])
  const traceId = '0af7651916cd43dd8448eb211c80319c'
  const res = await fetch(r.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-b7ad6b7169203331-01` }, body: '{"prompt":"x"}' })
  t.equal(res.status, 200)
  await res.arrayBuffer()
  await new Promise((resolve) => setTimeout(resolve, 50))
  await flushTracing()
  const room = d.seen[0]!.body.bootstrap_room as number
  const span = (name: string) => lines.find((l) => l.startsWith(`[trace] ${name} `))
  const roomLine = span(`Bootstrap Room 0x${room.toString(16)}`)
  const requestLine = span('router_request')
  t.ok(roomLine, `the room span: ${lines.join('\n')}`)
  t.ok(requestLine)
  const id = (line: string, field: string) => new RegExp(`${field}=([0-9a-f]+)`).exec(line)![1]
  t.equal(id(roomLine!, 'trace'), traceId, "in the caller's trace")
  t.equal(id(roomLine!, 'parent'), id(requestLine!, 'span'), 'a child of router_request')
  t.match(roomLine!, `"spanserve.bootstrap_room":${room}`)
  t.match(roomLine!, `"spanserve.router.prefill_instance":"${p.url}"`)
  for (const s of [p.seen[0]!, d.seen[0]!]) {
    const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(s.headers.traceparent))
    t.equal(sent?.[1], traceId)
    t.equal(sent?.[2], id(roomLine!, 'span'), "the instance's parent is the room span")
  }
})
