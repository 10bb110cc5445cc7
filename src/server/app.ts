/** The Fastify application: routes, body limits, JSON-only bodies, and OpenAI-shaped errors. */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { SpanserveError, errorBody } from '../errors.ts'
import type { Logger } from '../logging.ts'
import type { Engine } from './engine.ts'
import { errorHeaders, toSpanserveError } from './http-errors.ts'
import type { ChildInfo } from './launcher.ts'
import { chatRoute } from './routes/chat.ts'
import { completionsRoute } from './routes/completions.ts'
import type { ServingInfo } from './routes/generate.ts'
import { healthRoute } from './routes/health.ts'
import { modelsRoute } from './routes/models.ts'

export interface AppOptions {
  log: Logger
  bodyLimit: number
  engine: Engine
  info: ServingInfo
  contextLength: number
  status: () => { ready: boolean; processes: ChildInfo[] }
}

export function buildApp(opts: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    // Per-request lines come from our own request logging, with rid and trace ids.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit,
    // Wrong types are errors, not coerced, and unknown fields are left alone.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  })
  app.setErrorHandler((err, request, reply) => {
    const e = toSpanserveError(err)
    if (e.status >= 500) request.log.error({ err }, 'request failed')
    void reply.code(e.status).headers(errorHeaders(e)).send(errorBody(e))
  })
  app.setNotFoundHandler((request, reply) => {
    const e = new SpanserveError('SPANSERVE_ERR_NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`)
    void reply.code(404).send(errorBody(e))
  })
  completionsRoute(app, opts.engine, opts.info)
  chatRoute(app, opts.engine, opts.info)
  modelsRoute(app, opts.info, opts.contextLength)
  healthRoute(app, opts.status)
  return app
}
