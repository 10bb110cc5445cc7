/**
 * What the scheduler records of each request's life: its part of the trace (thread span, the
 * prefill_waiting slice from arrival to admission, or on a decode instance decode_prepare and
 * decode_waiting, the end) and debug log lines that carry the
 * request's trace id.
 */
import * as tracing from '../tracing/index.ts'
import { traceLogFields, type Logger } from '../logging.ts'
import type { LoopObserver } from './loop.ts'
import type { SchedRequest } from './request.ts'

export function requestObserver(log: Logger): LoopObserver | undefined {
  const tracingOn = tracing.isTracingEnabled()
  const debug = log.isLevelEnabled('debug')
  if (!tracingOn && !debug) return undefined
  return {
    queued: (req) => {
      tracing.reqStart(req.rid, req.trace)
      tracing.sliceStart(req.rid, queueSlice(req))
    },
    admitted: (req) => {
      tracing.sliceEnd(req.rid, queueSlice(req), { attributes: { [tracing.SPANSERVE_QUEUE_MS]: req.admittedAt - req.enqueuedAt } })
    },
    kvWaiting: (req) => tracing.sliceStart(req.rid, tracing.SLICES.decodeWaiting),
    kvWaited: (req, outcome) => tracing.sliceEnd(req.rid, tracing.SLICE.decodeWaiting, { attributes: { [tracing.SPANSERVE_KV_TRANSFER_OUTCOME]: outcome } }),
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

/** The queue's slice: SGLang's decode_prepare for a disaggregated request on its decode instance. */
function queueSlice(req: SchedRequest): (typeof tracing.SLICES)['prefillWaiting' | 'decodePrepare'] {
  return req.bootstrap !== undefined && req.bootstrap.host === null ? tracing.SLICES.decodePrepare : tracing.SLICES.prefillWaiting
}
