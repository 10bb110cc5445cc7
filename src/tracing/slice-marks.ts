/**
 * Slice marks: for each request traced in this process, the span context of the latest top-level
 * slice (a child of its thread span) that this process has *exported*, reported to whoever asked
 * (a child process reports them to the server, src/process/child.ts). The server keeps the last mark
 * of each process per request, so that when a process dies, the resumed attempt's thread spans can
 * link to the dead process's last slice (src/server/engine-client/resume.ts).
 *
 * Why exported, not merely ended: a process killed with SIGKILL loses every span still in its export
 * queue (up to OTEL_BSP_SCHEDULE_DELAY of them). A link to one of those would point at a span no
 * backend ever receives; the last exported slice is one that exists. So the mark follows the
 * exporter's success, not the slice's end: what the dead process recorded after its last export is
 * lost with it, and the link names the latest slice that reached the collector.
 *
 * Cost: nothing while tracing is off (no slice, no export) or no one asked for marks (one check per
 * thread span and per export). When on: one map entry per traced request, one lookup per exported
 * span, and one small report per export that carried a request's slice, about one per
 * OTEL_BSP_SCHEDULE_DELAY, whatever the load.
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { formatTraceparent } from './propagation.ts'
import { runtime } from './runtime.ts'

/** Receives, per request (rid), the W3C traceparent of its latest exported top-level slice. */
export type SliceMarkSink = (rids: string[], slices: string[]) => void

let sink: SliceMarkSink | undefined
/** Thread span id → rid, for each request traced here: kept only while a sink is set. */
const threads = new Map<string, string>()

/**
 * Report marks to `s` from now on (undefined: stop). In a process whose tracing runs in a thread
 * (offload.ts), the thread collects them and this process's sink receives them.
 */
export function reportSliceMarks(s: SliceMarkSink | undefined): void {
  sink = s
  if (s === undefined) threads.clear()
  runtime.offload?.reportMarks(s !== undefined)
}

export function reportingSliceMarks(): boolean {
  return sink !== undefined
}

/** Marks that a tracing thread collected: handed to this process's sink. */
export function deliverSliceMarks(rids: string[], slices: string[]): void {
  sink?.(rids, slices)
}

/** A request's thread span started here (thread-tracer.ts). */
export function threadSpanStarted(spanId: string, rid: string): void {
  if (sink !== undefined) threads.set(spanId, rid)
}

/** It ended: the request is done here, so its later exports need no mark. */
export function threadSpanEnded(spanId: string): void {
  if (threads.size > 0) threads.delete(spanId)
}

/** Held slices that are safe, reported together: one report per interval, not one per slice. */
let secured: ReadableSpan[] = []
let securedTimer: NodeJS.Timeout | undefined
const SECURED_REPORT_MS = 100

/**
 * A span held for its trace's verdict was journaled (tail-buffer.ts): it outlives this process as an
 * exported one does, so it may be marked. Reported within SECURED_REPORT_MS, after the journal's write.
 */
export function spanSecured(span: ReadableSpan): void {
  if (sink === undefined || threads.size === 0) return
  const parent = span.parentSpanContext?.spanId
  if (parent === undefined || !threads.has(parent)) return
  secured.push(span)
  if (securedTimer === undefined) {
    securedTimer = setTimeout(reportSecured, SECURED_REPORT_MS)
    securedTimer.unref()
  }
}

function reportSecured(): void {
  securedTimer = undefined
  const spans = secured
  secured = []
  spansExported(spans)
}

/** A batch of spans was exported successfully (export-accounting.ts): report each request's latest. */
export function spansExported(spans: readonly ReadableSpan[]): void {
  if (sink === undefined || threads.size === 0) return
  let latest: Map<string, string> | undefined
  // The batch processor exports in the order spans ended, and a request's top-level slices follow
  // one another: the last of a request's in the batch is its latest.
  for (const span of spans) {
    const parent = span.parentSpanContext?.spanId
    if (parent === undefined) continue
    const rid = threads.get(parent)
    if (rid !== undefined) (latest ??= new Map()).set(rid, formatTraceparent(span.spanContext()))
  }
  if (latest !== undefined) sink([...latest.keys()], [...latest.values()])
}
