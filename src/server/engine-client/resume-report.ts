/** Resumed requests, waits for restarts and poison requests, counted (/metrics), traced (request_resumed) and logged. */
import type { Logger } from '../../logging.ts'
import type { EngineObserver } from './engine-client.ts'
import type { ServerMetrics } from './metrics.ts'
import { POISON_DEATHS } from './poison.ts'
import { resumedRequestTrace } from './request-trace.ts'

export function resumeReport(metrics: ServerMetrics, log: Logger): EngineObserver {
  return {
    resumed(rid, r, waitedMs) {
      metrics.resumed(r.reason)
      resumedRequestTrace(rid, r, waitedMs)
      log.info({ rid, reason: r.reason, process: r.process, process_pid: r.pid, tokens_carried: r.tokens, wait_ms: Math.round(waitedMs * 10) / 10 }, 'request resumed')
    },
    waited(seconds, outcome) {
      metrics.waitedForRestart(seconds, outcome)
    },
    poisoned(req, processKey, cause) {
      metrics.poisoned(cause ?? 'unknown')
      // An error: a process died twice on this request's step; the trace id finds its trace (null when untraced).
      const traceId = req.trace?.traceparent.split('-')[1] ?? null
      log.error({ rid: req.rid, trace_id: traceId, process: processKey, cause, deaths: POISON_DEATHS }, 'poison request: failed, not resumed again')
    },
  }
}
