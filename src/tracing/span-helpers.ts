/** Building blocks of span creation: a carrier as parent context, links, recorded errors. */
import { ROOT_CONTEXT, SpanStatusCode, trace as apiTrace, type Context, type Link, type Span, type SpanContext } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { parseTraceparent, type TraceCarrier } from './propagation.ts'
import { INTERNAL_HOP_KEY } from './sampler.ts'

/** The carrier's root span context as a parent; internal hops always follow its decision. */
export function remoteContext(c: TraceCarrier, internalHop: boolean): Context {
  const sc = parseTraceparent(c.traceparent)!
  if (c.tracestate !== undefined) sc.traceState = new TraceState(c.tracestate)
  const base = internalHop ? ROOT_CONTEXT.setValue(INTERNAL_HOP_KEY, true) : ROOT_CONTEXT
  return apiTrace.setSpanContext(base, sc)
}

export function linkTo(prev: SpanContext | undefined): Link[] | undefined {
  return prev === undefined ? undefined : [{ context: prev }]
}

export function recordError(span: Span, error: Error | string): void {
  span.recordException(typeof error === 'string' ? { name: 'Error', message: error } : error)
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) })
}

export function errorMessage(error: Error | string): string {
  return typeof error === 'string' ? error : error.message
}
