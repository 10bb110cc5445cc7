/**
 * The HTTP perimeter against the real server, on loopback, with bounded loops: slow headers and
 * bodies time out (slowloris), too many or too large headers get 431, Content-Length with
 * Transfer-Encoding is refused, one client's connections are bounded, and a client that stops
 * reading its streams cannot make the server buffer without bound: its requests end, their KV is
 * freed, the connection is dropped after --stream-stall-timeout, and memory comes back.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { startServer } from '../helpers/server.ts'
import { parseExposition } from '../helpers/prometheus.ts'

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
    held.push(await new Promise<Socket>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: server.port }, () => resolve(s))
    }))
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
  for (let i = 0; i < 3; i++) await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 200, stream: true }) }).then((r) => r.text())
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
    closed.push(new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port: server.port }, () => {
        s.write(request.repeat(perConnection))
        s.pause()
      })
      s.on('error', () => {})
      s.on('close', () => resolve())
      // Reading nothing until every request has ended; then draining shows whether the server closed it.
      void ended.then(() => s.resume())
    }))
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

t.test('the Authorization header and the key never appear in the logs', async (t) => {
  const secret = 'sk-never-logged-' + 'z'.repeat(16)
  await raw((s) => s.write(`GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${secret}\r\n${Array.from({ length: 30 }, (_, i) => `x-${i}: 1`).join('\r\n')}\r\n\r\n`))
  await raw((s) => s.write(`GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${secret}\r\n\r\n`))
  await raw((s) => s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secret}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n`))
  const text = JSON.stringify(server.logs)
  t.notOk(text.includes(secret), 'no log line carries the key')
  t.notOk(/authorization/i.test(text), 'no log line carries an Authorization header')
})
