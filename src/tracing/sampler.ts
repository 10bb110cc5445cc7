/**
 * The sampler every process uses: a trace-id ratio for traces that start here, parent-based for
 * the rest, with the ratio changeable at run time (the control endpoint calls setRatio).
 */
import { createContextKey, trace, type Attributes, type Context, type Link, type SpanKind } from '@opentelemetry/api'
import { SamplingDecision, TraceIdRatioBasedSampler, type Sampler, type SamplingResult } from '@opentelemetry/sdk-trace-base'

/**
 * Set on the parent context of spans continued from spanserve's own carrier (a ZeroMQ hop): the
 * decision was made once, at the request root, so downstream processes always follow it, even
 * when --trace-ignore-parent-sampling makes the server ignore a caller's flag.
 */
export const INTERNAL_HOP_KEY = createContextKey('spanserve.internal_hop')

const SAMPLED: SamplingResult = { decision: SamplingDecision.RECORD_AND_SAMPLED }
const DROPPED: SamplingResult = { decision: SamplingDecision.NOT_RECORD }

export class SpanserveSampler implements Sampler {
  private ratio: TraceIdRatioBasedSampler
  private rate: number

  constructor(
    rate: number,
    /** Honour a remote (caller's) parent's sampled flag. */
    private readonly parentBased: boolean,
    /**
     * Tail sampling (tail-decider.ts): every trace that starts here is recorded and held, and the head
     * decision is only told, to be kept whatever the trace's end.
     */
    private readonly tail?: { headSampled(traceId: string): void },
  ) {
    this.rate = clampRate(rate)
    this.ratio = new TraceIdRatioBasedSampler(this.rate)
  }

  setRatio(rate: number): void {
    this.rate = clampRate(rate)
    this.ratio = new TraceIdRatioBasedSampler(this.rate)
  }

  getRatio(): number {
    return this.rate
  }

  shouldSample(ctx: Context, traceId: string, name: string, kind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult {
    const parent = trace.getSpanContext(ctx)
    if (parent !== undefined && trace.isSpanContextValid(parent)) {
      const follow = !parent.isRemote || this.parentBased || ctx.getValue(INTERNAL_HOP_KEY) === true
      if (follow) {
        if (!(parent.traceFlags & 1)) return DROPPED
        if (this.tail !== undefined && parent.isRemote && ctx.getValue(INTERNAL_HOP_KEY) !== true) this.tail.headSampled(traceId)
        return SAMPLED
      }
    }
    const head = this.ratio.shouldSample(ctx, traceId)
    if (this.tail === undefined) return head
    if (head.decision === SamplingDecision.RECORD_AND_SAMPLED) this.tail.headSampled(traceId)
    return SAMPLED
  }

  toString(): string {
    return `SpanserveSampler{ratio=${this.rate}, parentBased=${this.parentBased}}`
  }
}

function clampRate(rate: number): number {
  if (typeof rate !== 'number' || Number.isNaN(rate)) return 1
  return Math.min(1, Math.max(0, rate))
}
