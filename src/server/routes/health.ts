/** GET /health: 200 only while every process is ready. */
import type { FastifyInstance } from 'fastify'
import { SpanserveError, errorBody } from '../../errors.ts'
import type { ChildInfo } from '../launcher.ts'

export function healthRoute(app: FastifyInstance, status: () => { ready: boolean; processes: ChildInfo[] }): void {
  app.get('/health', async (_request, reply) => {
    const s = status()
    if (s.ready) return { status: 'ok', processes: s.processes }
    const err = new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'not every process is ready')
    return reply.code(503).send({ ...errorBody(err), processes: s.processes })
  })
}
