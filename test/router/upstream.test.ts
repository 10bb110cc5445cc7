/**
 * The router's client to its instances (src/router/upstream.ts): pooled keep-alive connections; a
 * pooled connection that the instance had closed is retried once on a new one, while a new
 * connection that fails is the caller's failure; the abort signal cancels a request before and after
 * its response has arrived.
 */
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import t from 'tap'
import { Upstream, type UpstreamError } from '../../src/router/upstream.ts'

const read = (res: IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    let body = ''
    res.on('data', (c: Buffer) => (body += c.toString('utf8')))
    res.on('end', () => resolve(body))
    res.on('error', reject)
  })

/** A server that answers each request with its socket's number and how many requests that socket carried; `onRequest` may do otherwise. */
async function server(onRequest?: (n: number, socket: Socket, res: import('node:http').ServerResponse) => boolean) {
  const sockets = new Map<Socket, number>()
  const closed: boolean[] = []
  const s = createServer((req, res) => {
    const n = (sockets.get(req.socket) ?? 0) + 1
    sockets.set(req.socket, n)
    req.resume()
    res.once('close', () => closed.push(!res.writableFinished))
    if (onRequest?.(n, req.socket, res)) return
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`socket ${[...sockets.keys()].indexOf(req.socket) + 1} request ${n}`)
  })
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))))
  return { base: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, sockets, closed }
}

const request = (base: string, signal = new AbortController().signal) => ({ base, path: '/x', method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}'), signal })

t.test('connections are kept alive and reused', async (t) => {
  const s = await server()
  const up = new Upstream()
  t.teardown(() => up.close())
  t.equal(await read(await up.send(request(s.base))), 'socket 1 request 1')
  t.equal(await read(await up.send(request(s.base))), 'socket 1 request 2')
})

t.test('a pooled connection the instance closed is retried once on a new one; a new one that fails is not', async (t) => {
  // The second request on any connection is cut, as when the instance's idle timeout closed it.
  const s = await server((n, socket) => {
    if (n < 2) return false
    socket.destroy()
    return true
  })
  const up = new Upstream()
  t.teardown(() => up.close())
  t.equal(await read(await up.send(request(s.base))), 'socket 1 request 1')
  t.equal(await read(await up.send(request(s.base))), 'socket 2 request 1', 'sent again on a new connection')
  const refused = await server((_n, socket) => (socket.destroy(), true))
  const err = (await up.send(request(refused.base)).catch((e: unknown) => e)) as UpstreamError
  t.equal(err.code, 'ECONNRESET', 'a new connection cut before any byte fails the request')
  t.equal(refused.sockets.size, 1, 'once')
})

t.test('the abort signal cancels the request before its response, and the response after', async (t) => {
  let hold = true
  const s = await server((_n, _socket, res) => {
    if (hold) return true // never answered
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: 1\n\n') // and never ended
    return true
  })
  const up = new Upstream()
  t.teardown(() => up.close())
  const before = new AbortController()
  const pending = up.send(request(s.base, before.signal))
  await new Promise((r) => setTimeout(r, 50))
  before.abort()
  t.equal(((await pending.catch((e: unknown) => e)) as UpstreamError).code, 'ABORT_ERR')
  hold = false
  const after = new AbortController()
  const res = await up.send(request(s.base, after.signal))
  const first = await new Promise<string>((r) => res.once('data', (c: Buffer) => r(c.toString())))
  t.equal(first, 'data: 1\n\n')
  after.abort()
  await new Promise((r) => res.once('close', r))
  await new Promise((r) => setTimeout(r, 50))
  t.same(s.closed, [true, true], 'the instance saw both connections close before its answers ended')
})
