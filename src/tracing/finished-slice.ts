/**
 * Batch slices as finished spans. A batch slice (one per request per decode step at level 3) is
 * recorded after the fact: its start, end, parent and attributes are all known when it is made. So
 * it is built directly as the SDK's ReadableSpan and handed to the span processor, without what a
 * running span needs from `tracer.startSpan` and `span.end`: context lookups, the sampler (the parent
 * is the request's recording thread span, so the child is sampled), attribute sanitizing per span,
 * clock anchoring and end-time checks. The exporters see the same span either way.
 */
import { SpanKind, SpanStatusCode, type Attributes, type HrTime, type Link, type SpanContext, type SpanStatus } from '@opentelemetry/api'
import { hrTimeDuration, sanitizeAttributes, type InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import { RandomIdGenerator, type ReadableSpan, type TimedEvent } from '@opentelemetry/sdk-trace-base'
import { cutToLimit } from './attributes.ts'
import { FlightRecorder, markDetail } from './flight-recorder.ts'
import { LateSlices } from './held-traces.ts'
import type { SliceSink } from './types.ts'

const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET })
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[]
const NO_ATTRIBUTES: Attributes = Object.freeze({})
const ids = new RandomIdGenerator()

class FinishedSlice implements ReadableSpan {
  readonly kind = SpanKind.INTERNAL
  readonly status = UNSET
  readonly events = NO_EVENTS
  readonly ended = true
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0

  constructor(
    readonly name: string,
    private readonly context: SpanContext,
    readonly parentSpanContext: SpanContext,
    readonly startTime: HrTime,
    readonly endTime: HrTime,
    readonly duration: HrTime,
    readonly attributes: Attributes,
    readonly links: Link[],
    readonly resource: Resource,
    readonly instrumentationScope: InstrumentationScope,
  ) {}

  spanContext(): SpanContext {
    return this.context
  }
}

/**
 * One batch's slices: the attributes and times they share are prepared once, for every request of the
 * batch. A slice for the flight recorder only (detail) is not made here: the recorder holds the batch,
 * the parent and the link, and makes the slice (LateSlices.slice) only if it leaves.
 */
export class SliceBatch extends LateSlices {
  private readonly duration: HrTime
  private readonly attributes: Attributes
  /** performance.now() of the batch, for the recorder's window: one clock read for all its slices. */
  private readonly at: number

  constructor(
    private readonly sink: SliceSink,
    private readonly name: string,
    private readonly startTime: HrTime,
    private readonly endTime: HrTime,
    attributes: Attributes,
  ) {
    super()
    this.duration = hrTimeDuration(startTime, endTime)
    this.attributes = isEmpty(attributes) ? NO_ATTRIBUTES : Object.freeze(limitValues(sanitizeAttributes(attributes), sink.valueLengthLimit))
    this.at = performance.now()
  }

  /** Exports the slice of the request whose thread span is `parent`, linked to `prev`; returns its context. */
  record(parent: SpanContext, prev: SpanContext | undefined): SpanContext {
    const span = this.slice(parent, prev)
    this.sink.processor.onEnd(span)
    return span.spanContext()
  }

  /**
   * The slice of the request whose thread span is `parent`, linked to `prev`, for the flight recorder
   * only: held there as a compact record and made if it leaves (no other slice links to it, so its
   * span id can wait too). Without a recorder it is marked and handed to the processor as it is.
   */
  recordDetail(parent: SpanContext, prev: SpanContext | undefined): void {
    const { processor } = this.sink
    if (processor instanceof FlightRecorder) {
      processor.holdLate(this, parent, prev, this.at)
      return
    }
    const span = this.slice(parent, prev)
    markDetail(span)
    processor.onEnd(span)
  }

  slice(parent: SpanContext, prev: SpanContext | undefined): FinishedSlice {
    const sc: SpanContext = { traceId: parent.traceId, spanId: ids.generateSpanId(), traceFlags: parent.traceFlags, traceState: parent.traceState }
    const links = prev === undefined ? [] : [{ context: prev, attributes: {} }]
    const { sink } = this
    return new FinishedSlice(this.name, sc, parent, this.startTime, this.endTime, this.duration, this.attributes, links, sink.resource, sink.scope)
  }
}

function isEmpty(attrs: Attributes): boolean {
  for (const _ in attrs) return false
  return true
}

/** String values, and strings in arrays, cut to the attribute length limit. */
function limitValues(attrs: Attributes, limit: number): Attributes {
  const cut = (v: unknown): unknown => (typeof v === 'string' ? cutToLimit(v, limit) : v)
  for (const [k, v] of Object.entries(attrs)) attrs[k] = (Array.isArray(v) ? v.map(cut) : cut(v)) as Attributes[string]
  return attrs
}
