/**
 * The HTTP perimeter below the routes: how long a client may take to send a request (slowloris),
 * how many header fields it may send, how many connections one address may hold, and OpenAI-shaped
 * answers to HTTP that never became a request (malformed, Content-Length with Transfer-Encoding,
 * oversized headers, timeouts). Header values are never logged.
 */
import type { Server, ServerOptions } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { SpanserveError, errorBody, type ErrorCode } from '../errors.ts'

export interface PerimeterOptions {
  /** Milliseconds to receive the request headers. */
  headersTimeoutMs: number
  /** Milliseconds to receive the whole request, headers and body. */
  bodyTimeoutMs: number
  /** Most header fields one request may carry. */
  maxHeaders: number
  /** Most open connections one client address may hold. */
  maxConnectionsPerClient: number
}

/** Options for http.createServer: Node enforces the timeouts, checked often enough to matter. */
export function httpServerOptions(opts: PerimeterOptions): ServerOptions {
  const headersTimeout = Math.min(opts.headersTimeoutMs, opts.bodyTimeoutMs)
  return {
    headersTimeout,
    requestTimeout: opts.bodyTimeoutMs,
    // Node checks the timeouts every 30 s by default, which would let a slow client stay 30 s longer.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, headersTimeout / 4)),
  }
}

const CLIENT_ERRORS: Record<string, ErrorCode> = {
  ERR_HTTP_REQUEST_TIMEOUT: 'SPANSERVE_ERR_REQUEST_TIMEOUT',
  HPE_HEADER_OVERFLOW: 'SPANSERVE_ERR_HEADERS_TOO_LARGE',
}

/** Writes a whole HTTP response carrying `e`'s OpenAI body onto a socket no request owns, and closes it. */
function refuse(socket: Socket, e: SpanserveError): void {
  if (socket.writable) {
    const body = JSON.stringify(errorBody(e))
    const retry = e.status === 429 ? 'Retry-After: 1\r\n' : ''
    socket.end(`HTTP/1.1 ${e.status} ${e.type}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`)
  }
  socket.destroySoon()
}

/** Fastify's clientErrorHandler: HTTP that the parser or the timeouts refused. */
export function clientErrorHandler(log: FastifyBaseLogger, failed: (code: ErrorCode) => void) {
  return (err: Error & { code?: string }, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const code = CLIENT_ERRORS[err.code ?? ''] ?? 'SPANSERVE_ERR_BAD_HTTP'
    const e = new SpanserveError(code, code === 'SPANSERVE_ERR_BAD_HTTP' ? `malformed HTTP request (${err.code ?? 'parse error'})` : undefined)
    failed(code)
    log.info({ code, status: e.status, reason: err.code }, 'request refused')
    refuse(socket, e)
  }
}

/** Counts connections per remote address and refuses one over the limit with a 429. */
export function limitConnections(server: Server, opts: PerimeterOptions, log: FastifyBaseLogger, failed: (code: ErrorCode) => void): void {
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? ''
    const count = (open.get(address) ?? 0) + 1
    if (count > opts.maxConnectionsPerClient) {
      failed('SPANSERVE_ERR_TOO_MANY_CONNECTIONS')
      log.info({ code: 'SPANSERVE_ERR_TOO_MANY_CONNECTIONS', limit: opts.maxConnectionsPerClient }, 'connection refused')
      refuse(socket, new SpanserveError('SPANSERVE_ERR_TOO_MANY_CONNECTIONS', `more than ${opts.maxConnectionsPerClient} open connections from this client (--max-connections-per-client)`))
      return
    }
    open.set(address, count)
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1
      if (left === 0) open.delete(address)
      else open.set(address, left)
    })
  })
}

/** A request with more header fields than the limit is refused (431) before any route runs. */
export function limitHeaderCount(app: FastifyInstance, maxHeaders: number): void {
  app.addHook('onRequest', async (request) => {
    const fields = request.raw.rawHeaders.length / 2
    if (fields > maxHeaders) throw new SpanserveError('SPANSERVE_ERR_HEADERS_TOO_LARGE', `${fields} header fields; at most ${maxHeaders} are accepted (--max-headers)`)
  })
}
