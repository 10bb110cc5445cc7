/**
 * Tail sampling's API (--trace-keep; tail-buffer.ts, tail-decider.ts): the server follows each
 * generation request from start to end, decides its trace, and sends the verdicts to its children,
 * which apply them. With tracing or keep
 * off, each call is one check.
 */
import { runtime } from './runtime.ts'
import type { VerdictSink } from './tail-decider.ts'
import type { KeptBy, TailKeepOptions } from './types.ts'

/** The keep policies when this process decides verdicts (the server with --trace-keep), else null. */
export function tailKeepOptions(): TailKeepOptions | null {
  return runtime.enabled ? (runtime.decider?.opts ?? null) : null
}

/** A generation request of trace `traceId` started: the trace's verdict waits for its end. */
export function tailRequestStarted(traceId: string): void {
  runtime.decider?.requestStarted(traceId)
}

/** …and ended; a policy's `reason` keeps the whole trace. The last request's end decides the trace. */
export function tailRequestEnded(traceId: string, reason: KeptBy | undefined): void {
  runtime.decider?.requestEnded(traceId, reason)
}

/** Whether the head sampler sampled this trace (kept whatever its end). */
export function isHeadSampled(traceId: string): boolean {
  return runtime.decider?.isHeadSampled(traceId) ?? false
}

/** Server: where the verdicts go, batched (the launcher broadcasts them as trace_verdict). */
export function setTraceVerdictSink(sink: VerdictSink | undefined): void {
  if (runtime.decider !== undefined) runtime.decider.sink = sink
}

/** A child: the server's verdicts for the traces this process holds. */
export function applyTraceVerdicts(keep: readonly string[], drop: readonly string[]): void {
  if (!runtime.enabled) return
  if (runtime.offload !== undefined) runtime.offload.verdicts(keep, drop)
  else runtime.tail?.apply(keep, drop)
}
