/**
 * Who sent a request, for fair scheduling (src/scheduler/fairness.ts), the trace, the log and
 * per-client metrics. In order:
 * 1. the `X-Spanserve-Client` header: set by the caller (the OpenAI SDKs' `defaultHeaders`) or, better,
 *    by a gateway in front that knows its tenants; it needs no body parsing and does not change the
 *    meaning of OpenAI's `user` / `safety_identifier`, which name an application's end users;
 * 2. the bearer token, as `key:` and a hash of it (never the key), when the server has no --api-key
 *    of its own (with one, every client sends the same key, which tells none apart);
 * 3. the remote address, as `ip:ADDRESS` (behind a proxy, as Fastify's trustProxy gives it).
 */
import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'

export const CLIENT_HEADER = 'x-spanserve-client'

/** A header value used as it is: short, and safe in a log line and a metric label. */
const PLAIN = /^[\w.:@/+-]{1,64}$/

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16)

export function clientId(request: FastifyRequest, serverHasApiKey: boolean): string {
  const named = request.headers[CLIENT_HEADER]
  const header = Array.isArray(named) ? named[0] : named
  if (header) return PLAIN.test(header) ? header : `client:${hash(header)}`
  if (!serverHasApiKey) {
    const auth = request.headers.authorization
    if (auth?.startsWith('Bearer ') && auth.length > 7) return `key:${hash(auth.slice(7))}`
  }
  return `ip:${request.ip}`
}
