/** The Fastify application: routes, body limits, JSON-only bodies, and OpenAI-shaped errors. */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { SpanserveError, errorBody } from '../../errors.ts'
import type { Logger } from '../../logging.ts'
import { errorHeaders, toSpanserveError } from '../../http/http-errors.ts'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../json-depth.ts'
import { chatRoute } from './chat/route.ts'
import { completionsRoute } from './completions/route.ts'
import { healthRoute } from './health/route.ts'
import { modelsRoute } from './models/route.ts'
import { modelRetrieveRoute } from './models/retrieve.ts'
import { tokenizeRoute } from './tokenize/route.ts'
import { responsesRoute } from './responses/route.ts'
import { traceDumpRoute } from './trace-dump/route.ts'
import { traceSettingRoute } from './trace-setting/route.ts'
import { metricsRoute } from './metrics/route.ts'
import type { RoutesOptions } from './route-options.ts'
import { routeAuth, type AuthKeys } from '../../http/auth.ts'
import { bodyLengthRefusal, promptPrecheck } from './prompt-precheck.ts'
import { BodyThread, OFF_LOOP_BYTES } from './json-body/thread.ts'
import type { PromptCheck } from './json-body/parse.ts'
import { clientErrorHandler, httpServerOptions, limitConnections, limitHeaderCount, type PerimeterOptions } from '../../http/perimeter.ts'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { trace, type Context } from '@opentelemetry/api'
import { formatTraceparent } from '../../tracing/index.ts'

/** Every route, each a plugin taking RoutesOptions. */
const ROUTES = [completionsRoute, chatRoute, modelsRoute, healthRoute, metricsRoute, traceSettingRoute, traceDumpRoute, modelRetrieveRoute, tokenizeRoute, responsesRoute]

export interface AppOptions extends RoutesOptions {
  log: Logger
  auth: AuthKeys
  perimeter: PerimeterOptions
  /** When tracing is on: @fastify/otel's HTTP spans, except for these paths. */
  traceExcludeUrls: string[] | null
  /** @fastify/otel's lifecycle hook spans (onRequest, preHandler, …): level 3 only, as the server starts. */
  traceHookSpans: boolean
  /** True once SIGTERM arrived: new requests get 503 while those in flight finish. */
  isShuttingDown: () => boolean
  bodyLimit: number
  /** The tokenizer's characters-per-token bound, for refusing huge prompts here (prompt-precheck.ts). */
  charsPerToken: () => number | null
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  // Every error answered here is logged and counted once: refusals at info, failures at error.
  const answerError = (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const e = toSpanserveError(err)
    opts.info.metrics.failed(e.code)
    if (e.status >= 500 && e.code !== 'SPANSERVE_ERR_UNAVAILABLE' && e.code !== 'SPANSERVE_ERR_SHUTTING_DOWN') request.log.error({ err, code: e.code }, 'request failed')
    else request.log.info({ code: e.code, status: e.status, reason: e.message, url: request.url.split('?')[0] }, 'request refused')
    void reply.code(e.status).headers(errorHeaders(e)).send(errorBody(e))
  }
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    // Per-request lines come from our own request logging, with rid and trace ids.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit,
    // Wrong types are errors, not coerced, and unknown fields are left alone.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // Our own 503 while draining (OpenAI-shaped, with Retry-After), not Fastify's.
    return503OnClosing: false,
    // The perimeter: slow headers and bodies time out; malformed HTTP gets OpenAI's error body.
    http: httpServerOptions(opts.perimeter),
    requestTimeout: opts.perimeter.bodyTimeoutMs,
    clientErrorHandler: clientErrorHandler(opts.log as FastifyBaseLogger, (code) => opts.info.metrics.failed(code)),
    // Errors the router meets before any route or hook (a path that is not valid percent-encoded
    // UTF-8, /v1/models/%ff): OpenAI's body, not Fastify's.
    frameworkErrors: answerError,
  })
  limitConnections(app.server, opts.perimeter, opts.log as FastifyBaseLogger, (code) => opts.info.metrics.failed(code))
  limitHeaderCount(app, opts.perimeter.maxHeaders)
  app.addHook('onRequest', async () => {
    if (opts.isShuttingDown()) throw new SpanserveError('SPANSERVE_ERR_SHUTTING_DOWN', 'the server is shutting down; retry on another instance')
  })
  if (opts.traceExcludeUrls !== null) {
    const excluded = new Set(opts.traceExcludeUrls)
    // Registered explicitly: registerOnInitialization produces no spans under ESM.
    const otel = new FastifyOtelInstrumentation({ ignorePaths: (route: { url: string }) => excluded.has(route.url), instrumentHooks: opts.traceHookSpans })
    await app.register(otel.plugin())
    app.addHook('onSend', async (request, reply) => {
      // Responses that never reached a route (validation errors, 404) still name their trace.
      if (reply.hasHeader('traceparent')) return
      // Excluded paths have no context (null) at all.
      const ctx = (request as unknown as { opentelemetry?: () => { context: Context | null } }).opentelemetry?.()
      const sc = ctx?.context ? trace.getSpanContext(ctx.context) : undefined
      if (sc && trace.isSpanContextValid(sc)) void reply.header('traceparent', formatTraceparent(sc))
    })
  }
  // An oversized body is refused from its Content-Length alone (413 over --body-limit; 400 when no
  // prompt the context holds could be that long), and the rest of it is read and dropped so the
  // client, still sending, receives the answer instead of a broken pipe.
  app.addHook('onRequest', async (request) => {
    const length = Number(request.headers['content-length'] ?? 0)
    if (length > opts.bodyLimit) {
      request.raw.resume()
      throw new SpanserveError('SPANSERVE_ERR_BODY_TOO_LARGE', `request body of ${length} bytes is over the limit of ${opts.bodyLimit}`)
    }
    const tooLong = request.method === 'POST' ? bodyLengthRefusal(request.routeOptions.url ?? '', length, opts.contextLength, opts.charsPerToken()) : null
    if (tooLong) {
      request.raw.resume()
      throw tooLong
    }
  })
  // Before any route is added: each declares who may call it, checked on the matched route.
  routeAuth(app, opts.auth)
  // JSON bodies must be valid UTF-8: the default parser would turn bad bytes into U+FFFD silently.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  app.removeContentTypeParser('application/json')
  // Fastify would parse text/plain itself; the API takes JSON only (415 otherwise).
  app.removeContentTypeParser('text/plain')
  // Big bodies are parsed in a thread of their own (json-body/thread.ts), huge prompts refused there.
  const bodyThread = new BodyThread()
  app.addHook('onClose', () => bodyThread.close())
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    if ((body as Buffer).length >= OFF_LOOP_BYTES) {
      const check: PromptCheck = { url: request.routeOptions.url ?? '', contextLength: opts.contextLength, charsPerToken: opts.charsPerToken() }
      void bodyThread.parse(body as Buffer, request.method === 'POST' ? check : null).then((outcome) => {
        if (outcome.kind === 'value') done(null, outcome.value)
        else if (outcome.kind === 'syntax') done(new SyntaxError(outcome.message), undefined)
        else done(new SpanserveError(outcome.code, outcome.message, outcome.param), undefined)
      })
      return
    }
    let text: string
    try {
      text = utf8.decode(body as Buffer)
    } catch {
      done(new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'request body is not valid UTF-8'), undefined)
      return
    }
    // Refused before parsing: what walks the parsed body (stringify, templates, schemas) recurses on its depth.
    if (nestsDeeperThan(text)) {
      done(new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `request body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`), undefined)
      return
    }
    parseJson(request, text, done)
  })
  // After validation, before any route: a prompt too long for the whole context goes no further.
  app.addHook('preHandler', async (request) => {
    if (request.method !== 'POST') return
    const refusal = promptPrecheck(request.routeOptions.url ?? '', request.body, opts.contextLength, opts.charsPerToken())
    if (refusal) throw refusal
  })
  app.setErrorHandler(answerError)
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!
    const allowed = ['GET', 'POST'].filter((method) => app.hasRoute({ method, url: path }))
    const e =
      allowed.length > 0
        ? new SpanserveError('SPANSERVE_ERR_METHOD', `${request.method} is not allowed on ${path}; use ${allowed.join(' or ')}`)
        : new SpanserveError('SPANSERVE_ERR_NOT_FOUND', `no route for ${request.method} ${path}`)
    opts.info.metrics.failed(e.code)
    request.log.info({ code: e.code, status: e.status, url: path }, 'request refused')
    void reply
      .code(e.status)
      .headers(allowed.length > 0 ? { allow: allowed.join(', ') } : {})
      .send(errorBody(e))
  })
  const routes: RoutesOptions = { engine: opts.engine, info: opts.info, contextLength: opts.contextLength, status: opts.status, broadcast: opts.broadcast, dumpTraces: opts.dumpTraces }
  for (const route of ROUTES) await app.register(route, routes)
  return app
}
