/** GET /metrics: Prometheus text, or OpenMetrics (with exemplars) when the scraper asks for it. */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'

export const metricsRoute: FastifyPluginAsync<RoutesOptions> = async (app, { info: { metrics } }) => {
  app.get('/metrics', { config: { auth: 'metrics' } }, async (request, reply) => {
    const { contentType, body } = await metrics.render(request.headers.accept)
    return reply.type(contentType).send(body)
  })
}
