/**
 * The span journal's record format (span-journal.ts writes it, orphan-spans.ts reads it): each record
 * is a 4-byte little-endian length, a 1-byte type and the body. A header (the process's resource)
 * opens every segment file; a span record is its sequence number (a float64) and the span as one
 * JSON array; a watermark record says every sequence number below it was exported (or given up on)
 * by the process itself.
 *
 * JSON, not OTLP protobuf: JSON.stringify of an array is the cheapest encoding V8 offers here, and the
 * records are read back only after a crash. A record cut short by the kill (a torn last write) ends
 * the reading; every record before it stands.
 */
import { SpanKind, type Attributes, type HrTime, type Link, type SpanContext, type SpanStatus } from '@opentelemetry/api'
import { hrTimeDuration, TraceState, type InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base'

export const RECORD = { header: 1, span: 2, watermark: 3 } as const

/** Length prefix and type byte. */
const FRAME = 5
/** A span record's sequence number, after the frame. */
const SEQ = 8

/** What a header says: whose spans follow. */
export interface JournalHeader {
  key: string
  pid: number
  resource: Attributes
}

type ContextTuple = [traceId: string, spanId: string, traceFlags: number, traceState: string | null]
type EventTuple = [name: string, time: HrTime, attributes: Attributes | null, droppedAttributes: number]
type LinkTuple = [context: ContextTuple, attributes: Attributes | null, droppedAttributes: number]

/**
 * A span as the journal holds it: an array, so that no key is written per record. What differs
 * between the slices of one batch comes first; what they share (from the name on) last, so that it
 * is encoded once per batch (SpanJson).
 */
type SpanTuple = [
  context: ContextTuple,
  parent: ContextTuple | null,
  links: LinkTuple[],
  events: EventTuple[],
  status: [code: number, message: string | null],
  name: string,
  kind: SpanKind,
  start: HrTime,
  end: HrTime,
  attributes: Attributes,
  dropped: [attributes: number, events: number, links: number],
  scope: [name: string, version: string | null, schemaUrl: string | null],
]

/** A context as the JSON of its ContextTuple; ids are hex and need no escaping. */
function contextJson(c: SpanContext): string {
  const state = c.traceState?.serialize()
  return `["${c.traceId}","${c.spanId}",${c.traceFlags},${state === undefined ? 'null' : JSON.stringify(state)}]`
}

const hrJson = (t: HrTime): string => `[${t[0]},${t[1]}]`

function isEmpty(attrs: Attributes): boolean {
  for (const _ in attrs) return false
  return true
}

function linksJson(links: readonly Link[]): string {
  if (links.length === 0) return '[]'
  let out = ''
  for (const l of links) {
    const attrs = l.attributes === undefined ? 'null' : isEmpty(l.attributes) ? '{}' : JSON.stringify(l.attributes)
    out += `${out === '' ? '' : ','}[${contextJson(l.context)},${attrs},${l.droppedAttributesCount ?? 0}]`
  }
  return `[${out}]`
}

/**
 * The span's SpanTuple as JSON, written out by hand. JSON.stringify of a fresh tuple per span cost
 * twice as much; and the slices of one batch (finished-slice.ts) share their name, times, attributes
 * and scope, down to the same objects: the shared part's JSON is kept while they come back.
 */
class SpanJson {
  private lastAttrs: Attributes | undefined
  private lastStart: HrTime | undefined
  private lastName = ''
  private lastShared = ''

  of(span: ReadableSpan): string {
    const { status } = span
    const parent = span.parentSpanContext === undefined ? 'null' : contextJson(span.parentSpanContext)
    const events = span.events.length === 0 ? '[]' : JSON.stringify(span.events.map((e): EventTuple => [e.name, e.time, e.attributes ?? null, e.droppedAttributesCount ?? 0]))
    const statusJson = status.message === undefined ? `[${status.code},null]` : `[${status.code},${JSON.stringify(status.message)}]`
    return `[${contextJson(span.spanContext())},${parent},${linksJson(span.links)},${events},${statusJson},${this.shared(span)}]`
  }

  private shared(span: ReadableSpan): string {
    if (span.attributes === this.lastAttrs && span.startTime === this.lastStart && span.name === this.lastName) return this.lastShared
    const scope = span.instrumentationScope
    const scopeJson = JSON.stringify([scope.name, scope.version ?? null, scope.schemaUrl ?? null])
    this.lastShared = `${JSON.stringify(span.name)},${span.kind},${hrJson(span.startTime)},${hrJson(span.endTime)},${JSON.stringify(span.attributes)},[${span.droppedAttributesCount},${span.droppedEventsCount},${span.droppedLinksCount}],${scopeJson}`
    this.lastAttrs = span.attributes
    this.lastStart = span.startTime
    this.lastName = span.name
    return this.lastShared
  }
}

/**
 * Encodes records into one reused buffer: a span's record is built and written without a new
 * allocation unless it is larger than any before it.
 */
export class RecordEncoder {
  private buf = Buffer.allocUnsafe(16 * 1024)
  private readonly json = new SpanJson()

  /** The span's record, valid until the next call. */
  span(seq: number, span: ReadableSpan): Buffer {
    return this.frame(RECORD.span, seq, this.json.of(span))
  }

  watermark(seq: number): Buffer {
    return this.frame(RECORD.watermark, seq, '')
  }

  header(h: JournalHeader): Buffer {
    // Copied: a header is kept to open each new segment.
    return Buffer.from(this.frame(RECORD.header, undefined, JSON.stringify(h)))
  }

  private frame(type: number, seq: number | undefined, json: string): Buffer {
    const head = FRAME + (seq === undefined ? 0 : SEQ)
    // utf8 takes at most 3 bytes per UTF-16 unit.
    if (head + json.length * 3 > this.buf.length) this.buf = Buffer.allocUnsafe(head + json.length * 3)
    const buf = this.buf
    const n = json.length === 0 ? 0 : buf.write(json, head, 'utf8')
    buf.writeUInt32LE(head - 4 + n, 0)
    buf[4] = type
    if (seq !== undefined) buf.writeDoubleLE(seq, FRAME)
    return buf.subarray(0, head + n)
  }
}

/** One segment file read back: its header, its spans by sequence number, and the highest watermark in it. */
export interface SegmentContents {
  header: JournalHeader | undefined
  spans: { seq: number; tuple: SpanTuple }[]
  watermark: number
}

/** Reads the records of a segment; a torn or unreadable record ends it. */
export function readSegment(bytes: Buffer): SegmentContents {
  const out: SegmentContents = { header: undefined, spans: [], watermark: 0 }
  let at = 0
  while (at + FRAME <= bytes.length) {
    const len = bytes.readUInt32LE(at)
    const end = at + 4 + len
    if (len < 1 || end > bytes.length) break
    const type = bytes[at + 4]
    try {
      if (type === RECORD.header) out.header = JSON.parse(bytes.toString('utf8', at + FRAME, end)) as JournalHeader
      else if (type === RECORD.watermark) out.watermark = Math.max(out.watermark, bytes.readDoubleLE(at + FRAME))
      else if (type === RECORD.span) out.spans.push({ seq: bytes.readDoubleLE(at + FRAME), tuple: JSON.parse(bytes.toString('utf8', at + FRAME + SEQ, end)) as SpanTuple })
      else break
    } catch {
      break
    }
    at = end
  }
  return out
}

const contextOf = ([traceId, spanId, traceFlags, state]: ContextTuple): SpanContext => ({
  traceId,
  spanId,
  traceFlags,
  traceState: state === null ? undefined : new TraceState(state),
  isRemote: false,
})

/** A span read back from a dead process's journal: what the exporters need of a ReadableSpan. */
class RecoveredSpan implements ReadableSpan {
  readonly ended = true
  readonly name: string
  readonly kind: SpanKind
  readonly parentSpanContext: SpanContext | undefined
  readonly startTime: HrTime
  readonly endTime: HrTime
  readonly duration: HrTime
  readonly attributes: Attributes
  readonly events: TimedEvent[]
  readonly links: Link[]
  readonly status: SpanStatus
  readonly droppedAttributesCount: number
  readonly droppedEventsCount: number
  readonly droppedLinksCount: number
  private readonly context: SpanContext

  constructor(
    t: SpanTuple,
    readonly resource: Resource,
    readonly instrumentationScope: InstrumentationScope,
  ) {
    this.context = contextOf(t[0])
    this.parentSpanContext = t[1] === null ? undefined : contextOf(t[1])
    this.links = t[2].map(([context, attributes, dropped]) => ({ context: contextOf(context), attributes: attributes ?? undefined, droppedAttributesCount: dropped }))
    this.events = t[3].map(([name, time, attributes, dropped]) => ({ name, time, attributes: attributes ?? undefined, droppedAttributesCount: dropped }))
    this.status = t[4][1] === null ? { code: t[4][0] } : { code: t[4][0], message: t[4][1] }
    this.name = t[5]
    this.kind = t[6] ?? SpanKind.INTERNAL
    this.startTime = t[7]
    this.endTime = t[8]
    this.duration = hrTimeDuration(t[7], t[8])
    this.attributes = t[9]
    ;[this.droppedAttributesCount, this.droppedEventsCount, this.droppedLinksCount] = t[10]
  }

  spanContext(): SpanContext {
    return this.context
  }
}

/** Rebuilds journal spans as ReadableSpans of `resource`; spans of one scope share one scope object. */
export function rebuildSpans(tuples: readonly SpanTuple[], resource: Resource): ReadableSpan[] {
  const scopes = new Map<string, InstrumentationScope>()
  return tuples.map((t) => {
    const [name, version, schemaUrl] = t[11]
    const key = `${name}@${version ?? ''}:${schemaUrl ?? ''}`
    let scope = scopes.get(key)
    if (scope === undefined) {
      scope = { name, ...(version === null ? {} : { version }), ...(schemaUrl === null ? {} : { schemaUrl }) }
      scopes.set(key, scope)
    }
    return new RecoveredSpan(t, resource, scope)
  })
}
