/** GET /metrics: Prometheus text, or OpenMetrics (with exemplars) when the scraper asks for it. */
import type { FastifyInstance } from 'fastify'
import type { ServerMetrics } from '../metrics.ts'

export function metricsRoute(app: FastifyInstance, metrics: ServerMetrics): void {
  app.get('/metrics', async (request, reply) => {
    const { contentType, body } = await metrics.render(request.headers.accept)
    return reply.type(contentType).send(body)
  })
}
