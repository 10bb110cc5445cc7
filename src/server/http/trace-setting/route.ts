/**
 * GET/POST /v1/trace/setting: read and change the trace level and sample rate without a restart
 * (Triton's runtime trace setting). A change reaches every process.
 */
import type { FastifyPluginAsync } from 'fastify'
import * as tracing from '../../../tracing/index.ts'
import type { RoutesOptions } from '../route-options.ts'

const body = {
  type: 'object',
  minProperties: 1,
  additionalProperties: false,
  properties: {
    level: { enum: tracing.TRACE_LEVELS },
    sample_rate: { type: 'number', minimum: 0, maximum: 1 },
  },
} as const

export const traceSettingRoute: FastifyPluginAsync<RoutesOptions> = async (app, { broadcast }) => {
  const current = () => ({ enabled: tracing.isTracingEnabled(), level: tracing.getLevel(), sample_rate: tracing.getSampleRate() })
  app.get('/v1/trace/setting', { config: { auth: 'api' } }, async () => current())
  app.post<{ Body: { level?: tracing.TraceLevel; sample_rate?: number } }>('/v1/trace/setting', { schema: { body }, config: { auth: 'admin' } }, async (request) => {
    if (request.body.level !== undefined) tracing.setLevel(request.body.level)
    if (request.body.sample_rate !== undefined) tracing.setSampleRate(request.body.sample_rate)
    const now = current()
    broadcast({ type: 'trace_setting', level: now.level, sampleRate: now.sample_rate })
    request.log.info(now, 'trace setting changed')
    return now
  })
}
