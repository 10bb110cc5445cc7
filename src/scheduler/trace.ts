/**
 * The scheduler's part of each request's trace: its thread span, the prefill_waiting slice (queue
 * time, from arrival to admission into the running batch), and the end of the request here.
 */
import * as tracing from '../tracing/index.ts'
import type { LoopObserver } from './loop.ts'

export function schedulerTraceObserver(): LoopObserver | undefined {
  if (!tracing.isTracingEnabled()) return undefined
  return {
    queued: (req) => {
      tracing.reqStart(req.rid, req.trace)
      tracing.sliceStart(req.rid, tracing.SLICE.prefillWaiting, { level: 1 })
    },
    admitted: (req) => {
      tracing.sliceEnd(req.rid, tracing.SLICE.prefillWaiting, { attributes: { 'spanserve.queue.ms': req.admittedAt - req.enqueuedAt } })
      // The worker's first slice links to prefill_waiting through this carrier.
      return tracing.getPropagateContext(req.rid)
    },
    ended: (req, reason, error) => {
      if (error !== null) tracing.reqFinish(req.rid, { error })
      else if (reason === 'abort') tracing.reqAbort(req.rid, 'aborted by the client or a stop string')
      else tracing.reqFinish(req.rid, { attributes: { [tracing.GEN_AI_USAGE_OUTPUT_TOKENS]: req.generated } })
    },
  }
}
