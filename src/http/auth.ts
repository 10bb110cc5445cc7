/**
 * Who may call a route. Every route declares `config.auth`, and the key is checked by a hook on
 * the route the router matched, never on the URL string: the router decodes and normalises the
 * path, so any spelling that reaches a route meets that route's check (a path that reaches none
 * gets 404 before any check). Keys are compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify'
import { SpanserveError } from '../errors.ts'

/**
 * - open: anyone (/health; /metrics unless --protect-metrics).
 * - api: the data plane, `--api-key`.
 * - admin: routes that change the server; `--admin-api-key` when set, else `--api-key`.
 * - metrics: /metrics; open unless --protect-metrics, then as admin.
 */
export type RouteAuth = 'open' | 'api' | 'admin' | 'metrics'

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth
  }
}

export interface AuthKeys {
  apiKey: string
  adminApiKey: string
  protectMetrics: boolean
}

// Hashing first gives equal-length buffers, so the comparison leaks neither content nor length.
const digest = (s: string) => createHash('sha256').update(s).digest()

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization ?? ''
  return header.startsWith('Bearer ') ? header.slice(7) : ''
}

/** A hook that lets a request through only with `key`; null when no key is configured. */
function requireKey(key: string, which: string): onRequestHookHandler | null {
  if (!key) return null
  const expected = digest(key)
  return async (request) => {
    if (!timingSafeEqual(digest(bearer(request)), expected)) {
      throw new SpanserveError('SPANSERVE_ERR_UNAUTHORIZED', `Incorrect API key provided; send the ${which} as "Authorization: Bearer KEY"`)
    }
  }
}

/** The check each kind of route gets under these keys. */
export function authChecks(keys: AuthKeys): Record<RouteAuth, onRequestHookHandler | null> {
  const api = requireKey(keys.apiKey, '--api-key')
  const admin = keys.adminApiKey ? requireKey(keys.adminApiKey, '--admin-api-key') : api
  if (keys.protectMetrics && admin === null) {
    throw new SpanserveError('SPANSERVE_ERR_CONFIG', '--protect-metrics needs --api-key or --admin-api-key')
  }
  return { open: null, api, admin, metrics: keys.protectMetrics ? admin : null }
}

/**
 * Registered before any route: each route must declare config.auth (a route without one stops the
 * start), and a protected route runs its key check before any other of its hooks.
 */
export function routeAuth(app: FastifyInstance, keys: AuthKeys): void {
  const checks = authChecks(keys)
  app.addHook('onRoute', (route) => {
    const auth = (route.config as { auth?: RouteAuth } | undefined)?.auth
    if (auth === undefined || !Object.hasOwn(checks, auth)) {
      throw new SpanserveError('SPANSERVE_ERR_CONFIG', `route ${String(route.method)} ${route.url} declares no config.auth`)
    }
    const check = checks[auth]
    if (check === null) return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [check, ...own]
  })
}
