/**
 * The HTTP perimeter against the real server, on loopback, with bounded loops: slow headers and
 * bodies time out (slowloris), too many or too large headers get 431, Content-Length with
 * Transfer-Encoding is refused, one client's connections are bounded, and a client that stops
 * reading its streams cannot make the server buffer without bound: its requests end, their KV is
 * freed, the connection is dropped after --stream-stall-timeout, and memory comes back; an n > 1
 * stream whose client stops reading ends every one of its sequences, with one slow-reader event.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { startServer } from '../../harness/server.ts'
import { metricsOnceKvFreed, parseExposition } from '../helpers/prometheus.ts'

const server = await startServer({
  args: ['--headers-timeout', '1', '--body-timeout', '2', '--max-headers', '24', '--max-connections-per-client', '6', '--stream-stall-timeout', '1', '--stream-buffer-limit', '65536'],
})
t.teardown(() => server.stop())

interface RawAnswer {
  status: number | null
  body: string
  /** Milliseconds from the first byte sent until the server closed the connection. */
  closedAfterMs: number
}

/** Opens a connection, lets `drive` write to it, and collects whatever the server answers until it closes. */
function raw(drive: (s: Socket) => void, giveUpMs = 20_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const s = connect({ host: '127.0.0.1', port: server.port }, () => drive(s))
    let text = ''
    s.setEncoding('utf8')
    s.on('data', (c: string) => (text += c))
    s.on('error', () => {})
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`the server kept the connection open for ${giveUpMs} ms`))
    }, giveUpMs)
    s.on('close', () => {
      clearTimeout(timer)
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text)
      resolve({ status: m ? Number(m[1]) : null, body: text.slice(text.indexOf('\r\n\r\n') + 4), closedAfterMs: Date.now() - started })
    })
  })
}

const errorCode = (a: RawAnswer) => (JSON.parse(a.body) as { error: { code: string } }).error.code

t.test('slow headers: 408 and the connection closed (slowloris)', async (t) => {
  const a = await raw((s) => s.write('POST /v1/completions HTTP/1.1\r\nhost: x\r\n'))
  t.equal(a.status, 408)
  t.equal(errorCode(a), 'SPANSERVE_ERR_REQUEST_TIMEOUT')

  // Dripping one header byte at a time does not reset the clock.
  const drip = await raw((s) => {
    const timer = setInterval(() => (s.writable ? s.write('x') : clearInterval(timer)), 100)
    s.write('GET /health HTTP/1.1\r\nx-drip: ')
    s.once('close', () => clearInterval(timer))
  })
  t.equal(drip.status, 408, 'a header dripped byte by byte times out too')
})

t.test('slow body: 408 and the connection closed', async (t) => {
  const a = await raw((s) => s.write('POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":'))
  t.equal(a.status, 408)
  t.equal(errorCode(a), 'SPANSERVE_ERR_REQUEST_TIMEOUT')
})

t.test('too many or too large headers: 431 in OpenAI shape', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `x-h${i}: v`).join('\r\n')
  const a = await raw((s) => s.write(`GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${many}\r\n\r\n`))
  t.equal(a.status, 431)
  t.equal(errorCode(a), 'SPANSERVE_ERR_HEADERS_TOO_LARGE')
  const big = await raw((s) => s.write(`GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`))
  t.equal(big.status, 431, 'a header block over 16 KiB')
  t.equal(errorCode(big), 'SPANSERVE_ERR_HEADERS_TOO_LARGE')
  const fine = await raw((s) => s.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-a: 1\r\n\r\n'))
  t.equal(fine.status, 200, 'a few headers are fine')
})

t.test('Content-Length together with Transfer-Encoding is refused (request smuggling)', async (t) => {
  const body = '{"model":"default","prompt":"Hi","max_tokens":1}'
  const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
  const a = await raw((s) => s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\ntransfer-encoding: chunked\r\n\r\n${chunked}`))
  t.equal(a.status, 400)
  t.equal(errorCode(a), 'SPANSERVE_ERR_BAD_HTTP')
})

t.test('one client holds at most --max-connections-per-client connections', async (t) => {
  const held: Socket[] = []
  t.teardown(() => held.forEach((s) => s.destroy()))
  for (let i = 0; i < 6; i++) {
    held.push(
      await new Promise<Socket>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: server.port }, () => resolve(s))
      }),
    )
  }
  const over = await raw(() => {})
  t.equal(over.status, 429, 'the seventh is answered 429 and closed')
  t.equal(errorCode(over), 'SPANSERVE_ERR_TOO_MANY_CONNECTIONS')
  held.pop()!.destroy()
  await new Promise((r) => setTimeout(r, 200))
  const again = await raw((s) => s.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'))
  t.equal(again.status, 200, 'once one closes, a new connection is served')
})

function serverRssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.proc.pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

async function metrics() {
  return parseExposition(await (await fetch(server.url + '/metrics')).text())
}

t.test('a client that stops reading its streams: requests end, KV freed, connection dropped, memory back', async (t) => {
  const body = JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 2000, ignore_eos: true, stream: true })
  const request = `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  // Warm up, then take the baseline.
  for (let i = 0; i < 3; i++)
    await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 200, stream: true }),
    }).then((r) => r.text())
  const baseline = serverRssBytes()
  const endedEarly = async () => {
    const m = await metrics()
    return m.sum('spanserve:request_failure_total', { code: 'SPANSERVE_ERR_SLOW_READER' }) + m.sum('spanserve:request_failure_total', { code: 'client_disconnected' })
  }
  const endedBefore = await endedEarly()
  const finishedBefore = (await metrics()).sum('spanserve:request_success_total')

  // Each connection pipelines three long streams and reads nothing: the later responses wait behind
  // the first inside the server, where only backpressure bounds them.
  const rounds = 2
  const perConnection = 3
  let markEnded!: () => void
  const ended = new Promise<void>((r) => (markEnded = r))
  const closed: Promise<void>[] = []
  for (let i = 0; i < rounds; i++) {
    closed.push(
      new Promise((resolve) => {
        const s = connect({ host: '127.0.0.1', port: server.port }, () => {
          s.write(request.repeat(perConnection))
          s.pause()
        })
        s.on('error', () => {})
        s.on('close', () => resolve())
        // Reading nothing until every request has ended; then draining shows whether the server closed it.
        void ended.then(() => s.resume())
      }),
    )
  }
  const deadline = Date.now() + 60_000
  let left = -1
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250))
    const m = await metrics()
    left = m.sum('spanserve:num_requests_running') + m.sum('spanserve:num_requests_waiting') + m.sum('spanserve:kv_cache_tokens')
    if (left === 0 && (await endedEarly()) - endedBefore === rounds * perConnection) break
  }
  markEnded()
  t.equal(left, 0, 'no request of the stalled clients is left running or waiting, and their KV is freed')
  t.equal((await endedEarly()) - endedBefore, rounds * perConnection, 'every stalled stream was ended early (slow reader or dropped connection)')
  t.equal((await metrics()).sum('spanserve:request_success_total') - finishedBefore, 0, 'none ran on to its 2000 tokens')

  // The server dropped every stalled connection itself (keep-alive alone would hold them 72 s).
  const closedInTime = await Promise.race([Promise.all(closed).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))])
  t.ok(closedInTime, 'every stalled connection was closed by the server')

  const after = serverRssBytes()
  t.ok(after < baseline * 1.25 + 16 * 1024 * 1024, `server RSS back near its baseline: ${(baseline / 2 ** 20).toFixed(0)} -> ${(after / 2 ** 20).toFixed(0)} MiB`)
})

t.test('n > 1: a client that stops reading an n=16 stream: every sequence ends, one slow-reader event, KV freed', async (t) => {
  // Its own server, whose stall timeout is long: only the stream-buffer rule can end the stream, and
  // what was buffered (the error event last) is still there when the client reads again.
  const own = await startServer({ args: ['--stream-stall-timeout', '120', '--stream-buffer-limit', '65536', '--stats-interval', '0.1'] })
  t.teardown(() => own.stop())
  const ownMetrics = async () => parseExposition(await (await fetch(own.url + '/metrics')).text())
  const n = 16
  const failures = async (code: string) => (await ownMetrics()).sum('spanserve:request_failure_total', { code })
  const slowBefore = await failures('SPANSERVE_ERR_SLOW_READER')
  const goneBefore = await failures('client_disconnected')
  const successBefore = (await ownMetrics()).sum('spanserve:request_success_total')

  // Each chunk carries 20 top logprobs (about 1.4 kB): what a client leaves unread fills the kernel's
  // socket buffers on loopback (several MiB) within a few hundred tokens per choice, and then the
  // server's own buffer.
  const body = JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 2000, ignore_eos: true, n, logprobs: true, top_logprobs: 20, stream: true })
  let text = ''
  let done!: () => void
  const sawDone = new Promise<void>((r) => (done = r))
  const s = connect({ host: '127.0.0.1', port: own.port }, () => {
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    s.pause()
  })
  t.teardown(() => s.destroy())
  s.setEncoding('utf8')
  s.on('error', () => {})
  s.on('data', (c: string) => {
    text += c
    if (text.includes('data: [DONE]')) done()
  })
  s.on('close', () => done())

  // Reading nothing: every sequence of the request is ended for the slow reader.
  const deadline = Date.now() + 60_000
  let slow = 0
  while (Date.now() < deadline && (slow = (await failures('SPANSERVE_ERR_SLOW_READER')) - slowBefore) < n) await new Promise((r) => setTimeout(r, 200))
  t.equal(slow, n, 'each of the 16 sequences was ended as a slow reader')
  const m = await metricsOnceKvFreed(own.url)
  t.equal(m.sum('spanserve:num_requests_running') + m.sum('spanserve:num_requests_waiting'), 0, 'none of them is left running or waiting')
  t.equal(m.sum('spanserve:kv_cache_usage_perc'), 0, 'no KV budget reserved')
  t.equal(m.sum('spanserve:kv_cache_tokens'), 0, "no token in a worker's KV cache")
  t.equal(m.sum('spanserve:request_success_total') - successBefore, 0, 'none ran on to its 2000 tokens')
  t.equal(m.sum('spanserve:request_failure_total', { code: 'client_disconnected' }) - goneBefore, 0, 'ended by the buffer rule, not by a dropped connection')

  // Reading again: what was buffered arrives, the slow-reader error event once, then [DONE].
  s.resume()
  await Promise.race([sawDone, new Promise((r) => setTimeout(r, 20_000))])
  t.match(text, /^HTTP\/1\.1 200/, 'the stream had started')
  t.equal(text.split('"code":"SPANSERVE_ERR_SLOW_READER"').length - 1, 1, 'one slow-reader error event')
  t.ok(text.indexOf('"code":"SPANSERVE_ERR_SLOW_READER"') < text.indexOf('data: [DONE]'), 'then [DONE]')
  s.destroy()

  // The server stays healthy: an n > 1 stream read as it comes is served whole.
  t.equal((await fetch(own.url + '/health')).status, 200, '/health answers 200')
  const res = await fetch(own.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 8, ignore_eos: true, n: 4, stream: true }),
  })
  const sse = await res.text()
  t.equal(res.status, 200, 'a following n=4 stream is served')
  t.equal(sse.split('"finish_reason":"length"').length - 1, 4, 'a following n=4 stream: every choice finishes')
  t.notOk(sse.includes('"error"'), 'with no error event')
  const after = await metricsOnceKvFreed(own.url)
  t.equal(after.sum('spanserve:kv_cache_tokens'), 0, 'and no KV is held after it')
})

t.test('the Authorization header and the key never appear in the logs', async (t) => {
  const secret = 'sk-never-logged-' + 'z'.repeat(16)
  await raw((s) => s.write(`GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${secret}\r\n${Array.from({ length: 30 }, (_, i) => `x-${i}: 1`).join('\r\n')}\r\n\r\n`))
  await raw((s) => s.write(`GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${secret}\r\n\r\n`))
  await raw((s) => s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secret}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n`))
  const text = JSON.stringify(server.logs)
  t.notOk(text.includes(secret), 'no log line carries the key')
  t.notOk(/authorization/i.test(text), 'no log line carries an Authorization header')
})
