/**
 * Tail sampling's verdicts, in the server (--trace-keep). With it on, every trace that starts at
 * spanserve is recorded in every process and held (tail-buffer.ts). The server decides a trace when
 * its last generation request ends (src/server/http/generation/run.ts says why it keeps one, if a
 * policy does: keepReason below), or, for a trace with none (a 404, /tokenize), when its top span
 * here ends: kept when the head sampler sampled it (--trace-sample-rate, or a caller's sampled
 * flag), when a request of it noted a reason, or when that top span failed. Spans of the trace that
 * end later (llm_request itself, the HTTP span) follow the verdict. The verdicts reach the children
 * batched, one message per interval.
 */
import { SpanStatusCode } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { RootDecider } from './tail-buffer.ts'
import type { KeptBy, TailKeepOptions } from './types.ts'

/** Traces remembered as head-sampled or noted, awaiting their root's end; the oldest are forgotten past it. */
const REMEMBERED_TRACES = 65_536

/** How often the verdicts decided meanwhile leave for the children: they only delay export, never serving. */
const VERDICT_INTERVAL_MS = 50

/** Verdicts per message at most. */
const MAX_VERDICTS = 4096

export type VerdictSink = (keep: string[], drop: string[]) => void

/** What a finished request measured, for the keep policies. */
export interface RequestOutcome {
  failed: boolean
  resumed: boolean
  ttftMs: number | null
  /** Gaps between output tokens, in ms (unsorted; sorted here in place). */
  gapsMs: number[] | null
  e2eMs: number
}

/** The policy that keeps a request with this outcome, if any: failed, then resumed, then slow (TTFT, ITL p99, end to end). */
export function keepReason(opts: TailKeepOptions, o: RequestOutcome): KeptBy | undefined {
  const on = opts.policies
  if (o.failed && on.includes('failed')) return 'failed'
  if (o.resumed && on.includes('resumed')) return 'resumed'
  if (!on.includes('slow')) return undefined
  if (opts.ttftMs > 0 && o.ttftMs !== null && o.ttftMs > opts.ttftMs) return 'slow_ttft'
  if (opts.itlP99Ms > 0 && o.gapsMs !== null && o.gapsMs.length > 0 && p99(o.gapsMs) > opts.itlP99Ms) return 'slow_itl'
  if (opts.e2eMs > 0 && o.e2eMs > opts.e2eMs) return 'slow_e2e'
  return undefined
}

/** The 99th percentile (nearest rank); sorts `xs` in place. */
export function p99(xs: number[]): number {
  xs.sort((a, b) => a - b)
  return xs[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)]!
}

export class TailDecider implements RootDecider {
  private readonly headKept = new Set<string>()
  private readonly noted = new Map<string, KeptBy>()
  /** Generation requests of each trace still running: its verdict waits for the last. */
  private readonly live = new Map<string, number>()
  private keep: string[] = []
  private drop: string[] = []
  private timer: NodeJS.Timeout | undefined
  sink: VerdictSink | undefined
  /** This process's own hold, which applies each verdict at once. */
  local: { apply(keep: readonly string[], drop: readonly string[]): void } | undefined

  constructor(readonly opts: TailKeepOptions) {}

  /** The head sampler sampled this trace (sampler.ts): kept whatever happens. */
  headSampled(traceId: string): void {
    this.headKept.add(traceId)
    if (this.headKept.size > REMEMBERED_TRACES) this.headKept.delete(this.headKept.keys().next().value!)
  }

  isHeadSampled(traceId: string): boolean {
    return this.headKept.has(traceId)
  }

  /** A generation request of this trace started: the trace is decided when its last one ends. */
  requestStarted(traceId: string): void {
    this.live.set(traceId, (this.live.get(traceId) ?? 0) + 1)
    if (this.live.size > REMEMBERED_TRACES) this.live.delete(this.live.keys().next().value!)
  }

  /** A generation request of this trace ended, kept by a policy for `reason` (the first reason stays), or not. */
  requestEnded(traceId: string, reason: KeptBy | undefined): void {
    if (reason !== undefined && !this.noted.has(traceId)) {
      this.noted.set(traceId, reason)
      if (this.noted.size > REMEMBERED_TRACES) this.noted.delete(this.noted.keys().next().value!)
    }
    const n = (this.live.get(traceId) ?? 1) - 1
    if (n > 0) {
      this.live.set(traceId, n)
      return
    }
    this.live.delete(traceId)
    const keep = this.decide(traceId, false)
    this.local?.apply(keep ? [traceId] : [], keep ? [] : [traceId])
  }

  /** A top span ended: a trace with no generation request running is decided now; one with, at its last's end. */
  rootEnded(span: ReadableSpan): boolean | undefined {
    const id = span.spanContext().traceId
    if (this.live.has(id)) return undefined
    return this.decide(id, span.status.code === SpanStatusCode.ERROR)
  }

  private decide(id: string, failed: boolean): boolean {
    const keep = this.headKept.has(id) || this.noted.has(id) || (failed && this.opts.policies.includes('failed'))
    this.headKept.delete(id)
    this.noted.delete(id)
    ;(keep ? this.keep : this.drop).push(id)
    if (this.keep.length + this.drop.length >= MAX_VERDICTS) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), VERDICT_INTERVAL_MS)
      this.timer.unref()
    }
    return keep
  }

  /** Sends the verdicts decided so far (without a sink, e.g. no children, they are simply let go). */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.keep.length === 0 && this.drop.length === 0) return
    const { keep, drop } = this
    this.keep = []
    this.drop = []
    try {
      this.sink?.(keep, drop)
    } catch {
      // Verdicts lost cost held spans (dropped after the timeout), never serving.
    }
  }
}
