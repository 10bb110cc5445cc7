/** GET /health: 200 only while every process is ready, with each process's latest report and the instance's disaggregation mode. */
import type { FastifyPluginAsync } from 'fastify'
import { SpanserveError, errorBody } from '../../../errors.ts'
import type { RoutesOptions } from '../route-options.ts'

export const healthRoute: FastifyPluginAsync<RoutesOptions> = async (app, { status, info }) => {
  // What the router needs to pair instances (src/router): each one's mode, and where a decode instance takes KV.
  const disaggregation = { mode: info.disaggregationMode ?? 'null', bootstrap_port: info.disaggregationMode === 'decode' ? (info.bootstrapPort ?? null) : null }
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
    if (s.ready) return { status: 'ok', disaggregation, processes: s.processes, reports }
    const err = new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'not every process is ready')
    return reply.code(503).send({ ...errorBody(err), disaggregation, processes: s.processes, reports })
  })
}
