/**
 * Counts the spans that never reach the collector, and says so once. A full queue or a
 * collector that is down, slow or refusing must cost spans, never serving time.
 */
import type { Context } from '@opentelemetry/api'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { spansExported } from './slice-marks.ts'
import type { SpanJournal } from './span-journal.ts'
import type { WarnLogger } from './types.ts'

export const consoleWarnLogger: WarnLogger = {
  warn: (obj, msg) => console.warn(msg, obj),
}

export class DropCounter {
  private dropped = 0
  private warned = false

  constructor(
    private readonly log: WarnLogger,
    /** What the warning names as the destination: never headers. */
    private readonly destination: string,
  ) {}

  get count(): number {
    return this.dropped
  }

  add(n: number, reason: string): void {
    if (n <= 0) return
    this.dropped += n
    if (this.warned) return
    this.warned = true
    try {
      this.log.warn(
        { droppedSpans: n, destination: this.destination, reason },
        'tracing: spans are being dropped (export queue full or collector unreachable); serving is not affected, further drops are only counted',
      )
    } catch {
      // A broken logger must not turn into a serving error.
    }
  }
}

/**
 * Sits in front of the BatchSpanProcessor and mirrors its queue length, so overflow drops are
 * counted without reaching into its private fields: the BSP drops a sampled span exactly when
 * its buffer already holds maxQueueSize spans, and its buffer shrinks when a batch is handed
 * to the exporter (CountingExporter tells us). With a span journal (span-journal.ts), each span that
 * enters the queue is journaled here, so the journal mirrors the queue exactly.
 */
export class CountingSpanProcessor implements SpanProcessor {
  private queued = 0
  journal: SpanJournal | undefined

  constructor(
    private readonly inner: SpanProcessor,
    private readonly maxQueueSize: number,
    private readonly drops: DropCounter,
  ) {}

  /** Returns the export's first journal sequence number (-1 without a journal). */
  handedToExporter(n: number): number {
    this.queued = Math.max(0, this.queued - n)
    return this.journal?.handed(n) ?? -1
  }

  /** The export that handedToExporter numbered `first` was answered. */
  exportSettled(first: number): void {
    if (first >= 0) this.journal?.settled(first)
  }

  onStart(span: Span, parentContext: Context): void {
    this.inner.onStart(span, parentContext)
  }

  onEnd(span: ReadableSpan): void {
    if (span.spanContext().traceFlags & 1) {
      if (this.queued >= this.maxQueueSize) this.drops.add(1, 'export queue full')
      else {
        this.queued++
        this.journal?.append(span)
      }
    }
    this.inner.onEnd(span)
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush().catch(() => undefined)
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown().catch(() => undefined)
  }
}

/**
 * Wraps the real exporter: counts failed exports as dropped and never lets one throw; a successful
 * export updates the requests' slice marks (slice-marks.ts).
 */
export class CountingExporter implements SpanExporter {
  processor: CountingSpanProcessor | undefined

  constructor(
    private readonly inner: SpanExporter,
    private readonly drops: DropCounter,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    const first = this.processor?.handedToExporter(spans.length) ?? -1
    let done = false
    const finish = (result: ExportResult): void => {
      if (done) return
      done = true
      this.processor?.exportSettled(first)
      if (result.code !== ExportResultCode.SUCCESS) {
        this.drops.add(spans.length, result.error?.message ?? 'export failed')
      } else {
        try {
          spansExported(spans)
        } catch {
          // A mark lost costs a resumed request its link, never the export's callback.
        }
      }
      resultCallback(result)
    }
    try {
      this.inner.export(spans, finish)
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err as Error })
    }
  }

  /**
   * Spans another process recorded and never exported (orphan-spans.ts): sent beside the batches, not
   * through the queue, which they would only crowd; a failure is counted like any other.
   */
  exportRecovered(spans: ReadableSpan[]): Promise<void> {
    return new Promise<void>((resolve) => {
      const finish = (result: ExportResult): void => {
        if (result.code !== ExportResultCode.SUCCESS) this.drops.add(spans.length, result.error?.message ?? 'export failed')
        resolve()
      }
      try {
        this.inner.export(spans, finish)
      } catch (err) {
        finish({ code: ExportResultCode.FAILED, error: err as Error })
      }
    })
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown().catch(() => undefined)
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.().catch(() => undefined) ?? Promise.resolve()
  }
}
