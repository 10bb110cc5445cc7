/** GET /health: 200 only while every process is ready, with each process's latest report. */
import type { FastifyPluginAsync } from 'fastify'
import { SpanserveError, errorBody } from '../../../errors.ts'
import type { RoutesOptions } from '../route-options.ts'

export const healthRoute: FastifyPluginAsync<RoutesOptions> = async (app, { status }) => {
  app.get('/health', { config: { auth: 'open' } }, async (_request, reply) => {
    const s = status()
    const reports = s.reports.map((r) => ({
      role: r.role,
      dp_rank: r.dpRank,
      tp_rank: r.tpRank,
      pid: r.pid,
      live_requests: r.liveRequests,
      trace_contexts_open: r.tracedRequests,
      rss_bytes: r.rssBytes,
      heap_used_bytes: r.heapUsedBytes,
      external_bytes: r.externalBytes,
      // The prefix cache: tokens a scheduler has cached, KV blocks a worker rank holds.
      ...(r.scheduler?.cacheTokens !== undefined ? { prefix_cache_tokens: r.scheduler.cacheTokens } : {}),
      ...(r.worker?.cacheBlocks !== undefined ? { kv_blocks: r.worker.cacheBlocks } : {}),
    }))
    if (s.ready) return { status: 'ok', processes: s.processes, reports }
    const err = new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'not every process is ready')
    return reply.code(503).send({ ...errorBody(err), processes: s.processes, reports })
  })
}
