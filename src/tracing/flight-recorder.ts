/**
 * The flight recorder (--trace-flight-recorder SECONDS): every process records at level 3, and the
 * spans above the exported level (--trace-level) wait here, by trace, instead of the export queue.
 * A trace is let go N seconds after its last span, or, past the span cap, the oldest trace first
 * (dropped and counted). A tail-sampling keep or a dump (POST /v1/trace/dump) sends a trace's held
 * detail, or the whole window's, to the export queue.
 */
import type { Context, SpanContext } from '@opentelemetry/api'
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { HeldTraces, type LateSlices } from './held-traces.ts'
import type { FlightRecorderOptions } from './types.ts'

/** Spans that only the recorder sees (above the exported level): marked where they are made. */
const detail = new WeakSet<object>()

/** Marks a span as detail above the exported level: it goes to the recorder, not the export queue. */
export function markDetail(span: object): void {
  detail.add(span)
}

/**
 * Approximate heap per held span, measured on Node 20 (docs/tracing.md, "Flight recorder"): a span
 * held whole (a level-2 slice at --trace-level 1), and a batch slice held as a compact record (each
 * decode_forward and detokenize step: three slots of its trace's list and its share of the batch).
 */
export const BYTES_PER_SPAN = 448
export const BYTES_PER_LATE_SLICE = 40

/** What a flush sent to the export queue. */
export interface Flushed {
  traces: number
  spans: number
}

/** The recorder's size, for /metrics. */
export interface RecorderStats {
  spans: number
  bytes: number
  dropped: number
}

export class FlightRecorder implements SpanProcessor {
  /** By trace id, least recently touched first (to within a hundredth of the window, at most 100 ms). */
  private readonly held: HeldTraces
  private readonly sweep: NodeJS.Timeout
  /** Spans dropped for the cap (not those let go by age: that is the window). */
  dropped = 0

  /**
   * @param pass where spans at or below the exported level go (the tail-sampling hold or the queue)
   * @param out the export queue, where flushed spans go
   */
  constructor(
    private readonly pass: SpanProcessor,
    private readonly out: SpanProcessor,
    private readonly opts: FlightRecorderOptions,
  ) {
    this.held = new HeldTraces(true, Math.min(100, opts.windowSeconds * 10))
    this.sweep = setInterval(() => this.expire(performance.now()), Math.max(10, Math.min(1000, (opts.windowSeconds * 1000) / 4)))
    this.sweep.unref()
  }

  stats(): RecorderStats {
    const { count, late } = this.held
    return { spans: count, bytes: (count - late) * BYTES_PER_SPAN + late * BYTES_PER_LATE_SLICE, dropped: this.dropped }
  }

  onStart(span: Span, parentContext: Context): void {
    this.pass.onStart(span, parentContext)
  }

  onEnd(span: ReadableSpan): void {
    if (!detail.has(span)) {
      this.pass.onEnd(span)
      return
    }
    this.held.add(span.spanContext().traceId, span, performance.now())
    this.cap()
  }

  /**
   * Holds a batch slice above the exported level without making it: the slice of `batch` under
   * `parent` (a thread span), linked to `prev`, made only if it leaves (finished-slice.ts). `now`:
   * performance.now() of the batch.
   */
  holdLate(batch: LateSlices, parent: SpanContext, prev: SpanContext | undefined, now: number): void {
    this.held.addLate(parent.traceId, batch, parent, prev, now)
    if (this.held.count > this.opts.maxSpans) this.cap()
  }

  private cap(): void {
    while (this.held.count > this.opts.maxSpans) {
      const gone = this.held.dropOldest()
      if (gone === undefined) break
      this.dropped += gone
    }
  }

  /** Sends the held detail of these traces (all of the window without ids) to the export queue. */
  flush(ids?: readonly string[]): Flushed {
    const sent: Flushed = { traces: 0, spans: 0 }
    for (const id of ids ?? this.held.ids()) {
      const spans = this.held.take(id)
      if (spans === undefined) continue
      sent.traces++
      sent.spans += spans.length
      for (const s of spans) this.out.onEnd(s)
    }
    return sent
  }

  /** Lets go of the traces whose last span is older than the window. Exposed for tests. */
  expire(now: number): void {
    this.held.dropUntil(now - this.opts.windowSeconds * 1000)
  }

  forceFlush(): Promise<void> {
    return this.pass.forceFlush()
  }

  shutdown(): Promise<void> {
    clearInterval(this.sweep)
    this.held.clear()
    return this.pass.shutdown()
  }
}
