/**
 * Lookups both views need: spans by id, children by parent, traces by id, a request's rid.
 * Ids are looked up per trace (trace id + span id), so a span id repeated across traces is harmless.
 */
import { SPANSERVE_REQUEST_ID as REQUEST_ID } from '../tracing/attributes.ts'
import { REQUEST_ROOT_SPAN as REQUEST_ROOT } from '../tracing/names.ts'
import type { SpanRecord } from './span-record.ts'

export function spanKey(traceId: string, spanId: string): string {
  return `${traceId}/${spanId}`
}

/** Start first, then the longer span (a parent before a child that starts with it), then id. */
export function compareSpans(a: SpanRecord, b: SpanRecord): number {
  if (a.startNs !== b.startNs) return a.startNs < b.startNs ? -1 : 1
  if (a.endNs !== b.endNs) return a.endNs > b.endNs ? -1 : 1
  return a.spanId < b.spanId ? -1 : a.spanId > b.spanId ? 1 : 0
}

export interface TraceSummary {
  traceId: string
  rid: string | undefined
  startNs: bigint
  endNs: bigint
  spanCount: number
  /** The outermost span present in the file (the caller's, the HTTP span, or llm_request). */
  root: SpanRecord
}

export class SpanIndex {
  private readonly byKey = new Map<string, SpanRecord>()
  private readonly childrenByKey = new Map<string, SpanRecord[]>()
  private readonly byTrace = new Map<string, SpanRecord[]>()

  constructor(spans: readonly SpanRecord[]) {
    for (const s of spans) this.byKey.set(spanKey(s.traceId, s.spanId), s)
    for (const s of [...spans].sort(compareSpans)) {
      let list = this.byTrace.get(s.traceId)
      if (list === undefined) this.byTrace.set(s.traceId, (list = []))
      list.push(s)
      if (s.parentSpanId === undefined) continue
      const parentKey = spanKey(s.traceId, s.parentSpanId)
      let children = this.childrenByKey.get(parentKey)
      if (children === undefined) this.childrenByKey.set(parentKey, (children = []))
      children.push(s)
    }
  }

  get(traceId: string, spanId: string): SpanRecord | undefined {
    return this.byKey.get(spanKey(traceId, spanId))
  }

  /** The span's parent, if the file holds it. */
  parentOf(span: SpanRecord): SpanRecord | undefined {
    return span.parentSpanId === undefined ? undefined : this.get(span.traceId, span.parentSpanId)
  }

  /** Children in start order. */
  childrenOf(span: SpanRecord): readonly SpanRecord[] {
    return this.childrenByKey.get(spanKey(span.traceId, span.spanId)) ?? []
  }

  /** A trace's spans in start order (empty for an unknown id). */
  spansOf(traceId: string): readonly SpanRecord[] {
    return this.byTrace.get(traceId) ?? []
  }

  /** Spans whose parent is not in the file, in start order. */
  rootsOf(traceId: string): SpanRecord[] {
    return this.spansOf(traceId).filter((s) => this.parentOf(s) === undefined)
  }

  traceIds(): string[] {
    return [...this.byTrace.keys()]
  }

  /** The request id of a trace: llm_request's, else the first span that carries one. */
  requestIdOf(traceId: string): string | undefined {
    const spans = this.spansOf(traceId)
    const root = spans.find((s) => s.name === REQUEST_ROOT && typeof s.attributes[REQUEST_ID] === 'string')
    const any = root ?? spans.find((s) => typeof s.attributes[REQUEST_ID] === 'string')
    return any === undefined ? undefined : (any.attributes[REQUEST_ID] as string)
  }

  /** The request root span (llm_request) of a trace, if present. */
  requestRootOf(traceId: string): SpanRecord | undefined {
    return this.spansOf(traceId).find((s) => s.name === REQUEST_ROOT)
  }

  /** Trace ids whose spans carry this rid. */
  tracesWithRequestId(rid: string): string[] {
    return this.traceIds().filter((t) => this.spansOf(t).some((s) => s.attributes[REQUEST_ID] === rid))
  }

  /** A trace's summary, if the file holds the trace. */
  summaryOf(traceId: string): TraceSummary | undefined {
    const spans = this.spansOf(traceId)
    if (spans.length === 0) return undefined
    let endNs = spans[0]!.endNs
    for (const s of spans) if (s.endNs > endNs) endNs = s.endNs
    return {
      traceId,
      rid: this.requestIdOf(traceId),
      startNs: spans[0]!.startNs,
      endNs,
      spanCount: spans.length,
      root: this.rootsOf(traceId)[0] ?? spans[0]!,
    }
  }

  /** One summary per trace, in start order. */
  summaries(): TraceSummary[] {
    const out = this.traceIds().map((id) => this.summaryOf(id)!)
    return out.sort((a, b) => (a.startNs !== b.startNs ? (a.startNs < b.startNs ? -1 : 1) : a.traceId < b.traceId ? -1 : 1))
  }
}
