/**
 * An OTLP collector that is down, blackholes connections, or answers slowly costs spans, never
 * requests: every request is answered 200, its latency stays close to the same request against a
 * server with tracing off, lost spans are counted in /metrics (`spanserve:span_export_dropped_total`,
 * summed over every process), and each process warns about it at most once.
 *
 * Everything runs through the real processes (`npm start` and its children). The export batch
 * delay is shortened with the standard OTEL_BSP_SCHEDULE_DELAY (the SDK default is 5 s) so that a
 * failed export shows within seconds; the export timeout stays spanserve's own 5 s.
 */
import t, { type Test } from 'tap'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createNetServer, type Socket } from 'node:net'
import { startServer, type RunningServer } from '../../harness/server.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { parseExposition } from '../helpers/prometheus.ts'

const REQUESTS = 20
const COLLECTOR_SECRET = 'collector-secret-6f1d'
const DROP_WARNING = 'tracing: spans are being dropped'
/** What every traced server here shares: fast batches, and headers that must never be logged. */
const TRACED_ENV = {
  OTEL_BSP_SCHEDULE_DELAY: '500',
  OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${COLLECTOR_SECRET}`,
}

/** The baseline: the same server with tracing off, measured alongside each traced one. */
const off = await startServer()
t.teardown(() => off.stop())
// The three collectors are tried at once (most of each case is waiting for export timeouts); each
// case interleaves its requests with the baseline's, so both see the same machine load.
t.jobs = 3

async function complete(server: RunningServer, prompt: string): Promise<{ status: number; ms: number }> {
  const started = performance.now()
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 8, temperature: 0 }),
  })
  await res.arrayBuffer()
  return { status: res.status, ms: performance.now() - started }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/**
 * REQUESTS requests to `traced`, each followed by the same request to the untraced baseline, so
 * both see the same machine load; asserts all were 200 and the traced median is close to the
 * baseline's.
 */
async function servesLikeUntraced(t: Test, traced: RunningServer): Promise<void> {
  await complete(traced, 'warm up')
  await complete(off, 'warm up')
  const tracedMs: number[] = []
  const offMs: number[] = []
  const statuses: number[] = []
  for (let i = 0; i < REQUESTS; i++) {
    const prompt = `Once upon a time ${i}`
    const a = await complete(traced, prompt)
    const b = await complete(off, prompt)
    statuses.push(a.status)
    tracedMs.push(a.ms)
    offMs.push(b.ms)
  }
  t.same(statuses, Array(REQUESTS).fill(200), `all ${REQUESTS} requests answered 200`)
  const tm = median(tracedMs)
  const om = median(offMs)
  t.ok(tm < om * 3 + 200, `latency unharmed: traced median ${tm.toFixed(1)} ms vs tracing off ${om.toFixed(1)} ms`)
}

async function droppedTotal(server: RunningServer): Promise<number> {
  const text = await (await fetch(server.url + '/metrics')).text()
  return parseExposition(text).sum('spanserve:span_export_dropped_total')
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`${what}: not seen within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

/** Drop warnings by pid. */
function dropWarnings(server: RunningServer): Map<number, Record<string, unknown>[]> {
  const byPid = new Map<number, Record<string, unknown>[]>()
  for (const l of server.logs) {
    if (typeof l.msg !== 'string' || !l.msg.startsWith(DROP_WARNING)) continue
    const pid = l.pid as number
    byPid.set(pid, [...(byPid.get(pid) ?? []), l])
  }
  return byPid
}

/**
 * Spans are dropped and counted (> 0, summed over processes); after a second burst the count
 * grows (so several exports failed) and yet each process warned at most once, naming the
 * destination but never the export headers.
 */
async function dropsCountedAndWarnedOnce(t: Test, server: RunningServer, budgetMs: number): Promise<void> {
  const first = await waitFor('dropped spans in /metrics', budgetMs, async () => {
    const n = await droppedTotal(server)
    return n > 0 ? n : undefined
  })
  t.ok(first > 0, `spanserve:span_export_dropped_total = ${first} after the export timeout`)
  for (let i = 0; i < 5; i++) t.equal((await complete(server, `And then ${i}`)).status, 200, `second burst request ${i} answered 200`)
  const second = await waitFor('more dropped spans after a second burst', budgetMs, async () => {
    const n = await droppedTotal(server)
    return n > first ? n : undefined
  })
  t.ok(second > first, `the count keeps growing (${first} → ${second})`)
  // The per-process stats reports arrive every second; let the last warnings land.
  await new Promise((r) => setTimeout(r, 1200))
  const warnings = dropWarnings(server)
  t.ok(warnings.size >= 1, `warned (${warnings.size} processes)`)
  for (const [pid, lines] of warnings) t.ok(lines.length <= 1, `process ${pid} warned ${lines.length} time(s)`)
  const all = [...warnings.values()].flat()
  t.ok(
    all.every((l) => l.level === 40),
    'the warnings are at warn level',
  )
  t.notMatch(JSON.stringify(server.logs), COLLECTOR_SECRET, 'the export headers are never logged')
}

async function closedPort(): Promise<number> {
  const srv = createNetServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

t.test('collector down (gRPC to a closed port): requests unharmed, spans dropped and counted', async (t) => {
  const port = await closedPort()
  const server = await startServer({ args: ['--trace-enable', '--otlp-traces-endpoint', `127.0.0.1:${port}`], env: TRACED_ENV })
  t.teardown(() => server.stop())
  await servesLikeUntraced(t, server)
  await dropsCountedAndWarnedOnce(t, server, 20_000)
})

t.test('collector blackholes connections (accepts, never answers): requests unharmed, spans dropped and counted', async (t) => {
  const sockets = new Set<Socket>()
  const hole = createNetServer((s) => {
    sockets.add(s)
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
    // Read and ignore: no HTTP/2 settings frame ever comes back.
    s.resume()
  })
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => hole.close(() => r()))
  })
  const port = (hole.address() as { port: number }).port
  const server = await startServer({ args: ['--trace-enable', '--otlp-traces-endpoint', `127.0.0.1:${port}`], env: TRACED_ENV })
  t.teardown(() => server.stop())
  await servesLikeUntraced(t, server)
  t.ok(sockets.size > 0, 'the exporters did connect to the blackhole')
  // One failed export takes the 5 s export timeout; two of them in a row, plus the batch delay.
  await dropsCountedAndWarnedOnce(t, server, 25_000)
})

t.test('collector answers slowly (HTTP/protobuf, 3 s per export): requests unharmed, spans still delivered', async (t) => {
  const receiver = await startOtlpReceiver({ protocol: 'http' })
  t.teardown(() => receiver.close())
  const DELAY_MS = 3000
  let exports = 0
  let authorized = 0
  // A slow collector in front of the real receiver: hold each export DELAY_MS, then pass it on.
  const slow = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      exports++
      if (req.headers.authorization === `Bearer ${COLLECTOR_SECRET}`) authorized++
      setTimeout(() => {
        const headers: Record<string, string> = { 'content-type': String(req.headers['content-type'] ?? 'application/x-protobuf') }
        if (req.headers['content-encoding']) headers['content-encoding'] = String(req.headers['content-encoding'])
        fetch(receiver.endpoint + '/v1/traces', { method: 'POST', headers, body: Buffer.concat(chunks) })
          .then(async (r) => {
            const body = Buffer.from(await r.arrayBuffer())
            res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/x-protobuf' })
            res.end(body)
          })
          .catch(() => {
            res.writeHead(502)
            res.end()
          })
      }, DELAY_MS)
    })
  })
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
  t.teardown(async () => {
    slow.closeAllConnections()
    await new Promise<void>((r) => slow.close(() => r()))
  })
  const port = (slow.address() as { port: number }).port
  const server = await startServer({
    args: ['--trace-enable', '--otlp-traces-protocol', 'http/protobuf', '--otlp-traces-endpoint', `http://127.0.0.1:${port}`],
    env: TRACED_ENV,
  })
  t.teardown(() => server.stop())
  await servesLikeUntraced(t, server)
  // Within the export timeout a slow collector costs nothing: every request's trace arrives.
  await receiver.waitForSpans((spans) => spans.filter((s) => s.name === 'llm_request').length >= REQUESTS + 1, 30_000)
  t.ok(exports > 0, `the exports went through the slow collector (${exports} exports)`)
  t.equal(authorized, exports, 'OTEL_EXPORTER_OTLP_HEADERS reached the collector with every export')
  const roles = new Set(receiver.spans.map((s) => s.resource['spanserve.process.role']))
  t.same([...roles].sort(), ['scheduler', 'server', 'tokenizer', 'worker'], 'spans from every process')
  t.equal(await droppedTotal(server), 0, 'no span was dropped')
  t.equal(dropWarnings(server).size, 0, 'no drop warning')
})
