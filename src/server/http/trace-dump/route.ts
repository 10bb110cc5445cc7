/**
 * POST /v1/trace/dump (admin key): exports the flight recorder's window, the held level-3 detail of
 * every recent request in every process (--trace-flight-recorder), e.g. when an alert fires.
 */
import type { FastifyPluginAsync } from 'fastify'
import { flightRecorderStats } from '../../../tracing/index.ts'
import type { RoutesOptions } from '../route-options.ts'

export const traceDumpRoute: FastifyPluginAsync<RoutesOptions> = async (app, { dumpTraces }) => {
  app.post('/v1/trace/dump', { config: { auth: 'admin' } }, async (request) => {
    // Off (no tracing, or no recorder): nothing is held anywhere, and nobody is asked.
    if (flightRecorderStats() === null) return { flight_recorder: false, traces: 0, spans: 0, processes: 0, answered: 0 }
    const r = await dumpTraces()
    const answer = { flight_recorder: true, traces: r.traces, spans: r.spans, processes: r.processes, answered: r.answered }
    request.log.info(answer, 'flight recorder dumped')
    return answer
  })
}
