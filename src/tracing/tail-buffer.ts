/**
 * Tail sampling's hold (--trace-keep): in front of the export queue of every process, a trace's
 * finished spans wait here until the server's verdict for it (tail-decider.ts), then go on to the
 * queue (kept) or are let go (dropped). Bounded: past --trace-keep-buffer-spans the oldest trace's
 * spans are dropped and counted, and a trace whose verdict never comes is dropped after
 * verdictTimeoutMs, so neither a burst nor a lost verdict can grow memory without bound.
 *
 * A child's held spans are journaled as they are held (span-journal.ts, its held journal): a process
 * killed before the verdict leaves them to the server, whose own hold takes them (adopt) and lets
 * the verdict decide. Once journaled, a held slice counts as a slice mark (slice-marks.ts), so that a
 * resumed attempt links to it as it would to an exported one.
 */
import type { Context } from '@opentelemetry/api'
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { HeldTraces } from './held-traces.ts'
import type { SpanJournal } from './span-journal.ts'
import type { TailKeepOptions, WarnLogger } from './types.ts'

/** Recent verdicts remembered, so that a span ending after its trace's verdict follows it. */
const REMEMBERED_VERDICTS = 16_384

/** Decides a trace when its local root span ends: the server's part (tail-decider.ts). */
export interface RootDecider {
  /** Called for each span this process ends that has no local parent; returns the verdict, or undefined to wait. */
  rootEnded(span: ReadableSpan): boolean | undefined
}

export class TailBuffer implements SpanProcessor {
  /** By trace id, in the order of their first span. */
  private readonly held = new HeldTraces(false)
  private readonly verdicts = new Map<string, boolean>()
  private readonly sweep: NodeJS.Timeout
  /** Spans dropped unexported for want of room or of a verdict. */
  dropped = 0
  private warned = false
  /** Kept traces' held detail follows them (the flight recorder's, flight-recorder.ts). */
  onKeep: ((ids: readonly string[]) => void) | undefined
  /** Where held spans outlive this process (a child's held journal). */
  journal: SpanJournal | undefined
  /** A held span is journaled: it may be marked (slice-marks.ts spanSecured). */
  onSecured: ((span: ReadableSpan) => void) | undefined

  constructor(
    private readonly inner: SpanProcessor,
    private readonly opts: Pick<TailKeepOptions, 'bufferSpans' | 'verdictTimeoutMs'>,
    private readonly log: WarnLogger,
    private readonly decider?: RootDecider,
  ) {
    this.sweep = setInterval(() => this.expire(performance.now()), Math.max(10, Math.min(5000, opts.verdictTimeoutMs / 4)))
    this.sweep.unref()
  }

  /** Spans held now, awaiting verdicts. */
  get size(): number {
    return this.held.count
  }

  onStart(span: Span, parentContext: Context): void {
    this.inner.onStart(span, parentContext)
  }

  onEnd(span: ReadableSpan): void {
    const sc = span.spanContext()
    // Not recorded for export (a caller's "not sampled"): the queue ignores it as it always did.
    if (!(sc.traceFlags & 1)) {
      this.inner.onEnd(span)
      return
    }
    const verdict = this.follow(sc.traceId, span)
    if (this.decider !== undefined && verdict === undefined) {
      const parent = span.parentSpanContext
      if (parent === undefined || parent.isRemote === true) {
        const keep = this.decider.rootEnded(span)
        if (keep !== undefined) this.apply(keep ? [sc.traceId] : [], keep ? [] : [sc.traceId])
      }
    }
  }

  /** The verdicts: kept traces' held spans go on to the export queue, dropped ones are let go. */
  apply(keep: readonly string[], drop: readonly string[]): void {
    for (const id of keep) {
      this.remember(id, true)
      for (const s of this.held.take(id) ?? []) this.inner.onEnd(s)
    }
    if (keep.length > 0) this.onKeep?.(keep)
    for (const id of drop) {
      this.remember(id, false)
      this.held.drop(id)
    }
  }

  /** Another process's held span, recovered after its death (orphan-spans.ts): it follows its trace's verdict here. */
  adopt(span: ReadableSpan): void {
    this.follow(span.spanContext().traceId, span)
  }

  /** The span follows its trace's verdict: on to the queue, let go, or held until it comes; returns the verdict. */
  private follow(id: string, span: ReadableSpan): boolean | undefined {
    const verdict = this.verdicts.get(id)
    if (verdict === true) this.inner.onEnd(span)
    else if (verdict === undefined) this.hold(id, span)
    return verdict
  }

  /** Drops the traces that waited longer than the verdict timeout. Exposed for tests. */
  expire(now: number): void {
    this.held.dropUntil(now - this.opts.verdictTimeoutMs, (spans) => this.lost(spans, 'no verdict in time'))
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush()
  }

  /** What is still held has no verdict and is let go: at the default rate almost all of it would be dropped. */
  shutdown(): Promise<void> {
    clearInterval(this.sweep)
    this.held.clear()
    this.journal?.close()
    return this.inner.shutdown()
  }

  private hold(id: string, span: ReadableSpan): void {
    this.held.add(id, span, performance.now())
    if (this.journal !== undefined) {
      this.journal.append(span)
      this.onSecured?.(span)
    }
    while (this.held.count > this.opts.bufferSpans) {
      const gone = this.held.dropOldest()
      if (gone === undefined) break
      this.lost(gone, 'tail-sampling buffer full')
    }
  }

  private remember(id: string, keep: boolean): void {
    this.verdicts.delete(id)
    this.verdicts.set(id, keep)
    if (this.verdicts.size > REMEMBERED_VERDICTS) this.verdicts.delete(this.verdicts.keys().next().value!)
  }

  private lost(n: number, reason: string): void {
    this.dropped += n
    if (this.warned) return
    this.warned = true
    try {
      this.log.warn(
        { droppedSpans: n, reason, bufferSpans: this.opts.bufferSpans },
        'tracing: spans held for tail sampling are being dropped unexported; serving is not affected, further drops are only counted',
      )
    } catch {
      // A broken logger must not turn into a serving error.
    }
  }
}
