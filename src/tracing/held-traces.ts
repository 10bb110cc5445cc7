/**
 * Finished spans held by trace id, in the order of their time, with the count of spans held: what
 * tail sampling's hold (tail-buffer.ts) and the flight recorder (flight-recorder.ts) keep.
 *
 * A span is held either as the span itself or, for a batch slice that only the flight recorder sees
 * (a level-3 decode_forward or detokenize step), as a compact record: the batch it belongs to, its
 * parent's context and the slice it links to, three slots of the trace's list and no object of its
 * own. The span is made from these only when it leaves (take): most never do, since the window lets
 * them go unexported, and a span made later is the span that would have been made then.
 */
import type { SpanContext } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'

/** A batch whose slices are made when they leave: one per (parent, prev) recorded against it. */
export abstract class LateSlices {
  /** The slice of the request whose thread span is `parent`, linked to `prev`. */
  abstract slice(parent: SpanContext, prev: SpanContext | undefined): ReadableSpan
}

interface Held {
  /** Spans, and compact slices as three entries: their LateSlices, parent, prev. In the order held. */
  items: unknown[]
  /** Spans held, compact ones counted one each. */
  count: number
  /** Of which compact. */
  late: number
  /** performance.now() ms of its first span, or of its last where each span renews the trace. */
  at: number
  /** When it took its place in the map's order (renewing: at most `slack` ms before `at`). */
  placed: number
}

export class HeldTraces {
  private readonly byTrace = new Map<string, Held>()
  /** Spans held, over all traces. */
  count = 0
  /** Of which held as compact records (addLate). */
  late = 0

  /**
   * `renew`: each span renews its trace's time, and the map's order is the order of those times to
   * within `slack` ms (a trace moves to the end only when its place is older than that: one map lookup
   * per span, not three); else first-span order.
   */
  constructor(
    private readonly renew: boolean,
    private readonly slack = 0,
  ) {}

  add(traceId: string, span: ReadableSpan, now: number): void {
    this.held(traceId, now).items.push(span)
  }

  /** Holds the slice of `batch` under `parent`, linked to `prev`, as a compact record (made on take). */
  addLate(traceId: string, batch: LateSlices, parent: SpanContext, prev: SpanContext | undefined, now: number): void {
    const h = this.held(traceId, now)
    h.items.push(batch, parent, prev)
    h.late++
    this.late++
  }

  /** The trace's spans, no longer held; undefined when none are. */
  take(traceId: string): ReadableSpan[] | undefined {
    const h = this.byTrace.get(traceId)
    if (h === undefined) return undefined
    this.forget(traceId, h)
    return materialise(h.items)
  }

  /** Lets go of the trace's spans unmade; returns how many there were (0: none held). */
  drop(traceId: string): number {
    const h = this.byTrace.get(traceId)
    if (h === undefined) return 0
    this.forget(traceId, h)
    return h.count
  }

  /** Lets go of the oldest trace's spans (renewing: the least recently touched to within `slack` ms); returns how many there were, or undefined when none are held. */
  dropOldest(): number | undefined {
    const oldest = this.byTrace.keys().next().value
    return oldest === undefined ? undefined : this.drop(oldest)
  }

  /** Lets go of every trace whose time is at or before `cutoff`, each one's span count given to `gone`. */
  dropUntil(cutoff: number, gone?: (spans: number) => void): void {
    for (const [id, h] of this.byTrace) {
      // Map order is the order of places, and a time is never before its place: the rest are younger.
      if (h.placed > cutoff) break
      if (h.at > cutoff) continue
      this.forget(id, h)
      gone?.(h.count)
    }
  }

  ids(): string[] {
    return [...this.byTrace.keys()]
  }

  clear(): void {
    this.byTrace.clear()
    this.count = 0
    this.late = 0
  }

  private held(traceId: string, now: number): Held {
    let h = this.byTrace.get(traceId)
    if (h === undefined) {
      h = { items: [], count: 0, late: 0, at: now, placed: now }
      this.byTrace.set(traceId, h)
    } else if (this.renew) {
      h.at = now
      if (now - h.placed > this.slack) {
        h.placed = now
        this.byTrace.delete(traceId)
        this.byTrace.set(traceId, h)
      }
    }
    h.count++
    this.count++
    return h
  }

  private forget(traceId: string, h: Held): void {
    this.byTrace.delete(traceId)
    this.count -= h.count
    this.late -= h.late
  }
}

function materialise(items: unknown[]): ReadableSpan[] {
  const out: ReadableSpan[] = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    if (item instanceof LateSlices) {
      out.push(item.slice(items[i + 1] as SpanContext, items[i + 2] as SpanContext | undefined))
      i += 2
    } else out.push(item as ReadableSpan)
  }
  return out
}
