/**
 * The flight recorder (--trace-flight-recorder SECONDS): every process records at level 3, and the
 * spans above the exported level (--trace-level) wait here, by trace, instead of the export queue.
 * A trace is let go N seconds after its last span, or, past the span cap, the oldest trace first
 * (dropped and counted). A tail-sampling keep or a dump (POST /v1/trace/dump) sends a trace's held
 * detail, or the whole window's, to the export queue.
 */
import type { Context } from '@opentelemetry/api'
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { HeldTraces } from './held-traces.ts'
import type { FlightRecorderOptions } from './types.ts'

/** Spans that only the recorder sees (above the exported level): marked where they are made. */
const detail = new WeakSet<object>()

/** Marks a span as detail above the exported level: it goes to the recorder, not the export queue. */
export function markDetail(span: object): void {
  detail.add(span)
}

/**
 * Approximate heap per held span, measured on Node 20 (docs/tracing.md, "Flight recorder"): a level-3
 * decode_forward slice with the batch's attributes shared, plus its place in the trace's list.
 */
const BYTES_PER_SPAN = 448

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
  /** By trace id, least recently touched first: a trace moves to the end with each span. */
  private readonly held = new HeldTraces(true)
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
    this.sweep = setInterval(() => this.expire(performance.now()), Math.max(10, Math.min(1000, (opts.windowSeconds * 1000) / 4)))
    this.sweep.unref()
  }

  stats(): RecorderStats {
    return { spans: this.held.count, bytes: this.held.count * BYTES_PER_SPAN, dropped: this.dropped }
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
    while (this.held.count > this.opts.maxSpans) {
      const gone = this.held.takeOldest()
      if (gone === undefined) break
      this.dropped += gone.length
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
    this.held.takeUntil(now - this.opts.windowSeconds * 1000)
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
