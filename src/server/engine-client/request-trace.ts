/**
 * The server's part of a request's trace: the request root span (llm_request, under the HTTP span of
 * @fastify/otel), its api_server_dispatch slice, the first-token event, and the finish with usage,
 * finish reason and vLLM's latency attributes. Every function is a no-op for an untraced request.
 */
import { context, trace, type Context } from '@opentelemetry/api'
import * as tracing from '../../tracing/index.ts'
import type { RequestStats, SamplingParams, StrOutput } from '../../ipc/messages.ts'
import { samplingAttributes } from '../../sampling/attributes.ts'
import type { SpanserveError } from '../../errors.ts'

export interface RequestTraceStart {
  rid: string
  /** The HTTP span's context (@fastify/otel), when instrumented. */
  httpContext: Context | undefined
  operation: 'text_completion' | 'chat'
  model: string
  maxTokens: number
  sampling: SamplingParams
  /** Only recorded with --trace-record-content. */
  prompt: string
  /** Names of the tools offered; only recorded with --trace-record-content. */
  toolNames?: readonly string[]
  /** Who sent it (client-id.ts). */
  client?: string
}

/** Starts the request's trace; returns the carrier for the tokenizer and the traceparent to return. */
export function startRequestTrace(s: RequestTraceStart): { carrier: tracing.TraceCarrier | null; traceparent: string | null } {
  if (!tracing.isTracingEnabled()) return { carrier: null, traceparent: null }
  const attributes = {
    ...tracing.genAiRequestAttributes({
      operation: s.operation,
      model: s.model,
      maxTokens: s.maxTokens >= 0 ? s.maxTokens : undefined,
    }),
    ...samplingAttributes(s.sampling),
    ...tracing.contentAttributes(s.prompt, undefined, s.toolNames),
    ...(s.client !== undefined ? { [tracing.USER_ID]: s.client } : {}),
  }
  const start = () => {
    tracing.reqStart(s.rid, null, { root: true, attributes })
    tracing.sliceStart(s.rid, tracing.SLICES.apiServerDispatch)
    return tracing.getPropagateContext(s.rid)
  }
  const carrier = s.httpContext ? context.with(s.httpContext, start) : start()
  if (carrier) return { carrier, traceparent: carrier.traceparent }
  // Unsampled: the caller still learns the trace id its request belongs to.
  const sc = s.httpContext ? trace.getSpanContext(s.httpContext) : undefined
  return { carrier: null, traceparent: sc && trace.isSpanContextValid(sc) ? tracing.formatTraceparent(sc) : null }
}

export function dispatched(rid: string): void {
  tracing.sliceEnd(rid, tracing.SLICE.apiServerDispatch)
}

export function firstToken(rid: string): void {
  tracing.event(rid, tracing.EVENT.firstToken)
}

export interface Timing {
  startMs: number
  firstTokenMs: number | null
}

export function finishRequestTrace(rid: string, responseId: string, model: string, item: StrOutput, completion: string, timing: Timing): void {
  if (!tracing.isTraced(rid)) return
  const now = performance.now()
  const stats: RequestStats | null = item.stats
  tracing.event(rid, tracing.EVENT.finished, { [tracing.GEN_AI_RESPONSE_FINISH_REASONS]: [item.finishReason ?? 'stop'] })
  tracing.reqFinish(rid, {
    attributes: {
      ...tracing.genAiResponseAttributes({
        id: responseId,
        model,
        finishReasons: [item.finishReason ?? 'stop'],
        inputTokens: item.promptTokens,
        cacheReadInputTokens: item.cachedTokens,
        outputTokens: item.completionTokens,
        e2e: (now - timing.startMs) / 1000,
        timeToFirstToken: timing.firstTokenMs === null ? undefined : (timing.firstTokenMs - timing.startMs) / 1000,
        timeInQueue: stats ? stats.queueMs / 1000 : undefined,
        timeInModelPrefill: stats ? stats.prefillMs / 1000 : undefined,
        timeInModelDecode: stats ? stats.decodeMs / 1000 : undefined,
      }),
      ...tracing.contentAttributes(undefined, completion),
    },
  })
}

export function failRequestTrace(rid: string, err: SpanserveError): void {
  tracing.reqFinish(rid, { error: err, attributes: { [tracing.ERROR_TYPE]: err.code } })
}

/** The request was lost with a dead process and goes on in a new attempt, in the same trace. */
export function resumedRequestTrace(rid: string, r: { reason: string; process: string | null; pid: number | null; tokens: number }, waitedMs: number): void {
  if (!tracing.isTraced(rid)) return
  const attributes: Record<string, string | number> = {
    [tracing.SPANSERVE_RESUME_REASON]: r.reason,
    [tracing.SPANSERVE_RESUME_TOKENS_CARRIED]: r.tokens,
    [tracing.SPANSERVE_RESUME_WAIT_MS]: Math.round(waitedMs * 10) / 10,
  }
  if (r.process !== null) attributes[tracing.SPANSERVE_RESUME_PROCESS] = r.process
  if (r.pid !== null) attributes[tracing.SPANSERVE_RESUME_PROCESS_PID] = r.pid
  tracing.reqEvent(rid, tracing.EVENT.requestResumed, attributes)
}

/**
 * Tail sampling (--trace-keep): the request ended, kept for `reason` (on its root, before it ends)
 * or not; the last request of its trace to end decides the trace (src/tracing/tail-decider.ts).
 */
export function keptRequestTrace(rid: string, traceId: string, reason: tracing.KeptBy | undefined): void {
  if (reason !== undefined) tracing.reqAttrs(rid, { [tracing.SPANSERVE_TRACE_KEPT_BY]: reason })
  tracing.tailRequestEnded(traceId, reason === 'sampled' ? undefined : reason)
}

export function abortRequestTrace(rid: string, reason: string): void {
  tracing.reqAbort(rid, reason)
}
