/**
 * The router's HTTP client to its instances: node:http (or https) over one keep-alive agent per
 * scheme, no web streams. `send` resolves with the instance's IncomingMessage once its status line
 * and headers have arrived, so that the caller can pipe it to the client as it comes; it rejects
 * when no response came (connection refused or reset, the abort signal). A request on a pooled
 * connection that the instance closed while it sat idle (ECONNRESET before any byte, on a reused
 * socket) is sent once more on a new connection: that is the keep-alive race, not the instance
 * failing (Node's documented pattern, `request.reusedSocket`).
 *
 * Once the response has arrived, the abort signal destroys it (and so its connection: the instance
 * sees the client gone).
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import https from 'node:https'

export interface UpstreamRequest {
  /** The instance's base URL: http://10.0.0.7:8000 */
  base: string
  /** Path and query: /v1/completions?x=1 */
  path: string
  method: string
  headers: Record<string, string>
  body: Buffer | undefined
  signal: AbortSignal
}

/** An error before any response byte; `code` is Node's (ECONNREFUSED, ECONNRESET, …) when there is one. */
export type UpstreamError = Error & { code?: string }

interface Target {
  module: typeof http | typeof https
  agent: http.Agent
  hostname: string
  port: number
}

export class Upstream {
  private readonly agents = {
    http: new http.Agent({ keepAlive: true, scheduling: 'lifo', noDelay: true }),
    https: new https.Agent({ keepAlive: true, scheduling: 'lifo', noDelay: true }),
  }
  private readonly targets = new Map<string, Target>()

  send(req: UpstreamRequest): Promise<IncomingMessage> {
    return this.once(req, false)
  }

  /** Closes the pooled connections. */
  close(): void {
    this.agents.http.destroy()
    this.agents.https.destroy()
  }

  private target(base: string): Target {
    let t = this.targets.get(base)
    if (t === undefined) {
      const url = new URL(base)
      const secure = url.protocol === 'https:'
      t = {
        module: secure ? https : http,
        agent: secure ? this.agents.https : this.agents.http,
        // URL keeps an IPv6 address in brackets; node:http wants it bare.
        hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
      }
      this.targets.set(base, t)
    }
    return t
  }

  private once(r: UpstreamRequest, retried: boolean): Promise<IncomingMessage> {
    const t = this.target(r.base)
    const headers: OutgoingHttpHeaders = { ...r.headers }
    if (r.body !== undefined) headers['content-length'] = r.body.length
    return new Promise<IncomingMessage>((resolve, reject) => {
      if (r.signal.aborted) return reject(abortError())
      let response: IncomingMessage | null = null
      const out = t.module.request({ hostname: t.hostname, port: t.port, path: r.path, method: r.method, headers, agent: t.agent })
      const onAbort = () => {
        if (response !== null) response.destroy()
        else out.destroy(abortError())
      }
      r.signal.addEventListener('abort', onAbort, { once: true })
      out.on('response', (res: IncomingMessage) => {
        response = res
        // A connection cut mid-answer is seen by whoever reads the response (its pipe, or 'close');
        // an 'error' with no listener would end the router.
        res.on('error', () => undefined)
        // The listener goes with the response: an aborted signal destroys it until it has ended.
        res.once('close', () => r.signal.removeEventListener('abort', onAbort))
        resolve(res)
      })
      out.on('error', (err: UpstreamError) => {
        if (response !== null) return // the response's own stream reports it
        r.signal.removeEventListener('abort', onAbort)
        if (!retried && !r.signal.aborted && out.reusedSocket && err.code === 'ECONNRESET') {
          this.once(r, true).then(resolve, reject)
          return
        }
        reject(err)
      })
      out.end(r.body)
    })
  }
}

function abortError(): UpstreamError {
  const err: UpstreamError = new Error('aborted')
  err.code = 'ABORT_ERR'
  return err
}
