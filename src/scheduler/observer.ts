/**
 * What the scheduler records of each request's life: its part of the trace (thread span, the
 * prefill_waiting slice from arrival to admission, the end) and debug log lines that carry the
 * request's trace id.
 */
import * as tracing from '../tracing/index.ts'
import { traceLogFields, type Logger } from '../logging.ts'
import type { LoopObserver } from './loop.ts'

export function requestObserver(log: Logger): LoopObserver | undefined {
  const tracingOn = tracing.isTracingEnabled()
  const debug = log.isLevelEnabled('debug')
  if (!tracingOn && !debug) return undefined
  return {
    queued: (req) => {
      tracing.reqStart(req.rid, req.trace)
      tracing.sliceStart(req.rid, tracing.SLICES.prefillWaiting)
    },
    admitted: (req) => {
      tracing.sliceEnd(req.rid, tracing.SLICE.prefillWaiting, { attributes: { [tracing.SPANSERVE_QUEUE_MS]: req.admittedAt - req.enqueuedAt } })
    },
    ended: (req, reason, error) => {
      if (error !== null) tracing.reqFinish(req.rid, { error })
      else if (reason === 'abort') tracing.reqAbort(req.rid, 'aborted by the client or a stop string')
      else tracing.reqFinish(req.rid, { attributes: { [tracing.GEN_AI_USAGE_OUTPUT_TOKENS]: req.generated } })
      if (debug) {
        log.debug(
          {
            rid: req.rid,
            ...traceLogFields(req.trace),
            reason,
            error,
            prompt_tokens: req.inputIds.length,
            generated: req.generated,
            queue_ms: req.admittedAt > 0 ? req.admittedAt - req.enqueuedAt : null,
          },
          'request ended',
        )
      }
    },
  }
}
