/**
 * Spans → Chrome Trace Event JSON, the format ui.perfetto.dev and chrome://tracing open, laid
 * out as SGLang's converter does: a process track per OS process, lanes of nested slices within
 * it, span links drawn as flow arrows from the previous slice to the next, span events as instants.
 */
import { GEN_AI_OPERATION_NAME, GEN_AI_REQUEST_MODEL } from '../tracing/attributes.ts'
import { compareSpans, SpanIndex, spanKey } from './span-index.ts'
import type { SpanRecord } from './span-record.ts'
import { layoutTracks, type Placement } from './track-layout.ts'

export interface ChromeTraceEvent {
  name: string
  ph: 'X' | 'i' | 's' | 'f' | 'M'
  pid: number
  tid?: number
  /** Microseconds since the earliest span in the file. */
  ts?: number
  dur?: number
  cat?: string
  id?: number
  /** Flow finish binding: 'e' = to the enclosing slice. */
  bp?: 'e'
  /** Instant scope: 't' = thread. */
  s?: 't'
  args?: Record<string, unknown>
}

export interface ChromeTrace {
  traceEvents: ChromeTraceEvent[]
  displayTimeUnit: 'ms'
  otherData: Record<string, string>
}

/** Request-level attributes repeated on every slice, so a click on any slice says whose it is. */
const REQUEST_CONTEXT_KEYS = [GEN_AI_OPERATION_NAME, GEN_AI_REQUEST_MODEL] as const

export function toChromeTrace(spans: readonly SpanRecord[]): ChromeTrace {
  const index = new SpanIndex(spans)
  const layout = layoutTracks(spans, index)
  let baseline = spans[0]?.startNs ?? 0n
  for (const s of spans) if (s.startNs < baseline) baseline = s.startNs
  const us = (ns: bigint): number => Number(ns - baseline) / 1000

  const metadata: ChromeTraceEvent[] = []
  layout.processes.forEach((p, i) => {
    metadata.push({ name: 'process_name', ph: 'M', pid: p.pid, args: { name: p.name } })
    metadata.push({ name: 'process_sort_index', ph: 'M', pid: p.pid, args: { sort_index: i } })
    for (let tid = 1; tid <= p.laneCount; tid++) {
      metadata.push({ name: 'thread_name', ph: 'M', pid: p.pid, tid, args: { name: `lane ${tid}` } })
      metadata.push({ name: 'thread_sort_index', ph: 'M', pid: p.pid, tid, args: { sort_index: tid } })
    }
  })

  const context = new Map<string, Record<string, unknown>>()
  for (const traceId of index.traceIds()) context.set(traceId, requestContext(index, traceId))

  const placed = [...spans].map((span) => ({ span, at: layout.placements.get(spanKey(span.traceId, span.spanId))! })).sort((a, b) => comparePlaced(a.span, a.at, b.span, b.at))

  const slices: ChromeTraceEvent[] = []
  const instants: ChromeTraceEvent[] = []
  for (const { span, at } of placed) {
    const ctx = context.get(span.traceId)!
    slices.push({
      name: span.name,
      ph: 'X',
      cat: span.scope.name || 'span',
      pid: at.pid,
      tid: at.tid,
      ts: us(at.startNs),
      dur: Number(at.endNs - at.startNs) / 1000,
      args: sliceArgs(span, at, ctx, us),
    })
    for (const e of span.events) {
      instants.push({
        name: e.name,
        ph: 'i',
        s: 't',
        cat: 'event',
        pid: at.pid,
        tid: at.tid,
        ts: us(e.timeNs),
        args: { ...pick(ctx, ['rid']), span: span.name, span_id: span.spanId, ...e.attributes },
      })
    }
  }

  // Arrows run from the linked (previous) slice to the linking one, bound where each slice, not
  // a child of it, is the innermost slice on its lane.
  const flows: ChromeTraceEvent[] = []
  let flowId = 0
  for (const { span, at } of placed) {
    for (const link of span.links) {
      const from = index.get(link.traceId, link.spanId)
      const fromAt = from && layout.placements.get(spanKey(from.traceId, from.spanId))
      if (from === undefined || fromAt === undefined) continue
      const id = ++flowId
      flows.push({ name: 'link', ph: 's', cat: 'link', id, pid: fromAt.pid, tid: fromAt.tid, ts: us(bindPoint(from, fromAt, index, layout.placements)) })
      flows.push({ name: 'link', ph: 'f', bp: 'e', cat: 'link', id, pid: at.pid, tid: at.tid, ts: us(bindPoint(span, at, index, layout.placements)) })
    }
  }

  return {
    traceEvents: [...metadata, ...slices, ...instants, ...flows],
    displayTimeUnit: 'ms',
    otherData: {
      generator: 'spanserve trace perfetto',
      baseline_unix_nano: baseline.toString(),
      baseline_time: new Date(Number(baseline / 1_000_000n)).toISOString(),
    },
  }
}

/** One event per line: diffable, and a large trace never becomes one enormous line. */
export function formatChromeTrace(trace: ChromeTrace): string {
  const events = trace.traceEvents.map((e) => JSON.stringify(e)).join(',\n')
  return `{"traceEvents":[\n${events}\n],\n"displayTimeUnit":${JSON.stringify(trace.displayTimeUnit)},\n"otherData":${JSON.stringify(trace.otherData)}}\n`
}

function requestContext(index: SpanIndex, traceId: string): Record<string, unknown> {
  const ctx: Record<string, unknown> = {}
  const rid = index.requestIdOf(traceId)
  if (rid !== undefined) ctx.rid = rid
  const root = index.requestRootOf(traceId)
  for (const key of REQUEST_CONTEXT_KEYS) if (root?.attributes[key] !== undefined) ctx[key] = root.attributes[key]
  return ctx
}

function sliceArgs(span: SpanRecord, at: Placement, ctx: Record<string, unknown>, us: (ns: bigint) => number): Record<string, unknown> {
  const args: Record<string, unknown> = { ...ctx, trace_id: span.traceId, span_id: span.spanId }
  if (span.parentSpanId !== undefined) args.parent_span_id = span.parentSpanId
  Object.assign(args, span.attributes)
  if (span.status.code === 2) args.status = span.status.message === undefined ? 'ERROR' : `ERROR: ${span.status.message}`
  if (span.links.length > 0) args.links = span.links.map((l) => l.spanId)
  if (at.adjusted !== undefined) {
    // The drawn range differs from the recorded one; keep the recorded one visible.
    args.display_adjusted = at.adjusted
    args.recorded_ts = us(span.startNs)
    args.recorded_dur = Number(span.endNs - span.startNs) / 1000
  }
  return args
}

/**
 * A time inside the span's drawn range where it is the innermost slice on its lane: the middle of
 * the widest gap between its children there, so a flow binds to the span and not to a child.
 */
function bindPoint(span: SpanRecord, at: Placement, index: SpanIndex, placements: Map<string, Placement>): bigint {
  const kids = index
    .childrenOf(span)
    .map((c) => placements.get(spanKey(c.traceId, c.spanId)))
    .filter((p): p is Placement => p !== undefined && p.pid === at.pid && p.tid === at.tid)
    .sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))
  let bestStart = at.startNs
  let bestWidth = -1n
  let cursor = at.startNs
  for (const k of [...kids, { startNs: at.endNs, endNs: at.endNs }]) {
    if (k.startNs - cursor > bestWidth) {
      bestWidth = k.startNs - cursor
      bestStart = cursor
    }
    if (k.endNs > cursor) cursor = k.endNs
  }
  return bestStart + (bestWidth > 0n ? bestWidth / 2n : 0n)
}

function comparePlaced(a: SpanRecord, pa: Placement, b: SpanRecord, pb: Placement): number {
  if (pa.startNs !== pb.startNs) return pa.startNs < pb.startNs ? -1 : 1
  if (pa.endNs !== pb.endNs) return pa.endNs > pb.endNs ? -1 : 1
  if (pa.pid !== pb.pid) return pa.pid - pb.pid
  if (pa.tid !== pb.tid) return pa.tid - pb.tid
  if (pa.depth !== pb.depth) return pa.depth - pb.depth
  return compareSpans(a, b)
}

function pick(o: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}
