/**
 * Finished spans held by trace id, in the order of their time, with the count of spans held: what
 * tail sampling's hold (tail-buffer.ts) and the flight recorder (flight-recorder.ts) keep.
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'

interface Held {
  spans: ReadableSpan[]
  /** performance.now() ms of its first span, or of its last where each span renews the trace. */
  at: number
}

export class HeldTraces {
  private readonly byTrace = new Map<string, Held>()
  /** Spans held, over all traces. */
  count = 0

  /** `renew`: each span moves its trace to the end and renews its time (least recently touched first); else first-span order. */
  constructor(private readonly renew: boolean) {}

  add(traceId: string, span: ReadableSpan, now: number): void {
    let h = this.byTrace.get(traceId)
    if (h === undefined) h = { spans: [], at: now }
    else if (this.renew) this.byTrace.delete(traceId)
    if (this.renew) h.at = now
    h.spans.push(span)
    this.byTrace.set(traceId, h)
    this.count++
  }

  /** The trace's spans, no longer held; undefined when none are. */
  take(traceId: string): ReadableSpan[] | undefined {
    const h = this.byTrace.get(traceId)
    if (h === undefined) return undefined
    this.byTrace.delete(traceId)
    this.count -= h.spans.length
    return h.spans
  }

  /** The oldest trace's spans, no longer held. */
  takeOldest(): ReadableSpan[] | undefined {
    const oldest = this.byTrace.keys().next().value
    return oldest === undefined ? undefined : this.take(oldest)
  }

  /** Lets go of every trace whose time is at or before `cutoff`, each one's spans given to `gone`. */
  takeUntil(cutoff: number, gone?: (spans: ReadableSpan[]) => void): void {
    for (const [id, h] of this.byTrace) {
      // Map order is time order: the rest are younger.
      if (h.at > cutoff) break
      this.take(id)
      gone?.(h.spans)
    }
  }

  ids(): string[] {
    return [...this.byTrace.keys()]
  }

  clear(): void {
    this.byTrace.clear()
    this.count = 0
  }
}
