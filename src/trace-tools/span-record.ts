/**
 * One span as the trace tools see it: OTLP's wire shape flattened into plain values, with
 * nanosecond times kept exact as bigints (epoch nanoseconds do not fit a double).
 */

/** Attribute values: string, number, boolean, or arrays/maps of them (OTLP AnyValue, decoded). */
export type AttributeMap = Record<string, unknown>

export interface SpanEventRecord {
  name: string
  timeNs: bigint
  attributes: AttributeMap
}

export interface SpanLinkRecord {
  traceId: string
  spanId: string
  attributes: AttributeMap
}

interface SpanStatusRecord {
  /** 0 unset, 1 ok, 2 error (OTLP StatusCode). */
  code: number
  message?: string
}

export interface SpanRecord {
  /** Lower-case hex, 32 characters. */
  traceId: string
  /** Lower-case hex, 16 characters. */
  spanId: string
  /** Absent for a trace's root span. */
  parentSpanId?: string
  name: string
  /** OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  startNs: bigint
  endNs: bigint
  attributes: AttributeMap
  events: SpanEventRecord[]
  links: SpanLinkRecord[]
  status: SpanStatusRecord
  /** Attributes of the resource (the process) that produced the span. */
  resource: AttributeMap
  /** Instrumentation scope, e.g. `spanserve` or `@fastify/otel`. */
  scope: { name: string; version?: string }
}
