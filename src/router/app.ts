/**
 * The router's Fastify application: the server's perimeter (keys on the matched route, header and
 * body timeouts, header count, connections per client, body limit, JSON-only bodies) and OpenAI's
 * error body for every error, in front of the proxied routes and the router's own /health and
 * /metrics. The perimeter and key checks are the server's own modules (src/server/http), which
 * depend on nothing of the server's process.
 */
import { FastifyOtelInstrumentation } from '@fastify/otel'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { SpanserveError, errorBody, type ErrorCode } from '../errors.ts'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../json-depth.ts'
import type { Logger } from '../logging.ts'
import { routeAuth } from '../http/auth.ts'
import { errorHeaders, toSpanserveError } from '../http/http-errors.ts'
import { clientErrorHandler, httpServerOptions, limitConnections, limitHeaderCount, type PerimeterOptions } from '../http/perimeter.ts'
import type { InstanceSet } from './instances.ts'
import type { RouterMetrics } from './metrics.ts'
import { promptText } from './prompt-text.ts'
import type { RouterProxy } from './proxy.ts'

export interface RouterAppOptions {
  log: Logger
  apiKey: string
  perimeter: PerimeterOptions
  bodyLimit: number
  /** When tracing is on: @fastify/otel's HTTP spans, except for these paths. */
  traceExcludeUrls: string[] | null
  /** True once SIGTERM arrived: new requests get 503 while those in flight finish. */
  isShuttingDown: () => boolean
  /** The instances; under prefill/decode disaggregation, the decode instances. */
  instances: InstanceSet
  /** The prefill instances under prefill/decode disaggregation, else absent. */
  prefill?: InstanceSet | null
  metrics: RouterMetrics
  proxy: RouterProxy
}

/** The generation routes and the API whose prompt the policy reads. */
const GENERATION = [
  ['/v1/completions', 'completions'],
  ['/v1/chat/completions', 'chat'],
  ['/v1/responses', 'responses'],
] as const

export async function buildRouterApp(opts: RouterAppOptions): Promise<FastifyInstance> {
  const failed = (code: ErrorCode) => opts.metrics.error(code)
  const answerError = (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const e = toSpanserveError(err)
    failed(e.code)
    if (e.status >= 500 && e.code !== 'SPANSERVE_ERR_UNAVAILABLE' && e.code !== 'SPANSERVE_ERR_SHUTTING_DOWN') request.log.error({ reqId: request.id, err, code: e.code }, 'request failed')
    else request.log.info({ reqId: request.id, code: e.code, status: e.status, reason: e.message, url: request.url.split('?')[0] }, 'request refused')
    if (!reply.raw.headersSent) void reply.code(e.status).headers(errorHeaders(e)).send(errorBody(e))
  }
  const log = opts.log as FastifyBaseLogger
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request (a pino child is about 60 µs of the router's CPU a request): the
    // router logs a request only when it refuses or fails it, and then names its reqId itself.
    childLoggerFactory: (logger) => logger,
    bodyLimit: opts.bodyLimit,
    return503OnClosing: false,
    http: httpServerOptions(opts.perimeter),
    requestTimeout: opts.perimeter.bodyTimeoutMs,
    clientErrorHandler: clientErrorHandler(log, failed),
    frameworkErrors: answerError,
  })
  limitConnections(app.server, opts.perimeter, log, failed)
  limitHeaderCount(app, opts.perimeter.maxHeaders)
  app.addHook('onRequest', async () => {
    if (opts.isShuttingDown()) throw new SpanserveError('SPANSERVE_ERR_SHUTTING_DOWN', 'the router is shutting down; retry on another')
  })
  if (opts.traceExcludeUrls !== null) {
    const excluded = new Set(opts.traceExcludeUrls)
    const otel = new FastifyOtelInstrumentation({ ignorePaths: (route: { url: string }) => excluded.has(route.url) })
    await app.register(otel.plugin())
  }
  app.addHook('onRequest', async (request) => {
    const length = Number(request.headers['content-length'] ?? 0)
    if (length > opts.bodyLimit) {
      request.raw.resume()
      throw new SpanserveError('SPANSERVE_ERR_BODY_TOO_LARGE', `request body of ${length} bytes is over the limit of ${opts.bodyLimit}`)
    }
  })
  routeAuth(app, { apiKey: opts.apiKey, adminApiKey: '', protectMetrics: false })

  // The client's bytes go upstream as they came; the parsed body is only read for the prompt.
  const rawBodies = new WeakMap<FastifyRequest, Buffer>()
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  app.removeContentTypeParser('application/json')
  app.removeContentTypeParser('text/plain')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string
    try {
      text = utf8.decode(body as Buffer)
    } catch {
      done(new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'request body is not valid UTF-8'), undefined)
      return
    }
    if (nestsDeeperThan(text)) {
      done(new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `request body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`), undefined)
      return
    }
    try {
      const value: unknown = JSON.parse(text)
      rawBodies.set(request, body as Buffer)
      done(null, value)
    } catch (err) {
      done(err as SyntaxError, undefined)
    }
  })
  app.setErrorHandler(answerError)
  app.setNotFoundHandler((request, reply) => answerError(new SpanserveError('SPANSERVE_ERR_NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`), request, reply))

  for (const [url, api] of GENERATION) {
    app.post(url, { config: { auth: 'api' } }, async (request, reply) => {
      if (request.body === undefined) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'request body is empty; send JSON')
      return opts.proxy.handle(request, reply, { body: rawBodies.get(request), text: promptText(api, request.body), json: request.body })
    })
  }
  for (const url of ['/v1/models', '/v1/models/:model']) {
    app.get(url, { config: { auth: 'api' } }, async (request, reply) => opts.proxy.handle(request, reply, { body: undefined, text: null }))
  }
  app.get('/health', { config: { auth: 'open' } }, async (_request, reply) => {
    const sets = opts.prefill ? [opts.prefill, opts.instances] : [opts.instances]
    const healthy = sets.reduce((n, set) => n + set.healthy().length, 0)
    // Under disaggregation, both roles must have a healthy instance.
    const serving = sets.every((set) => set.healthy().length > 0)
    const instances = sets.flatMap((set) =>
      set
        .list()
        .map((i) => ({ url: i.url, ...(i.role !== null ? { role: i.role } : {}), healthy: i.healthy, in_flight: i.load, ...(i.unhealthyReason !== null ? { reason: i.unhealthyReason } : {}) })),
    )
    return reply.code(serving && !opts.isShuttingDown() ? 200 : 503).send({ healthy, instances })
  })
  app.get('/metrics', { config: { auth: 'metrics' } }, async (_request, reply) => {
    const { contentType, body } = await opts.metrics.render()
    return reply.type(contentType).send(body)
  })
  return app
}
