/**
 * What completions and chat share: turning a validated body into a GenerateReqInput, answering it
 * whole or as a stream, and aborting it when the client hangs up.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ChatMessage, ChatTool, FinishReason, GenerateReqInput, StrOutput } from '../../ipc/messages.ts'
import { SpanserveError, errorBody } from '../../errors.ts'
import type { Engine, RequestSink } from '../engine.ts'
import type { SamplingBody } from '../schemas.ts'
import { samplingFrom } from '../../sampling/body.ts'
import type { SamplingDefaults } from '../../sampling/defaults.ts'
import { endSse, sendEvent, startSse } from '../sse.ts'
import { errorHeaders } from '../http-errors.ts'
import { abortRequestTrace, dispatched, failRequestTrace, finishRequestTrace, firstToken, startRequestTrace, type Timing } from '../request-trace.ts'
import type { Context } from '@opentelemetry/api'
import type { ServerMetrics } from '../metrics.ts'
import type { ToolCallParserName } from '../tool-calls/parsers.ts'

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface ServingInfo {
  modelName: string
  /** Milliseconds a request may run; 0: no limit. */
  requestTimeoutMs: number
  /** Bytes a stream may buffer for a slow reader. */
  streamBufferLimit: number
  /** Milliseconds a stream may wait for a client that stopped reading before it is dropped. */
  streamStallTimeoutMs: number
  metrics: ServerMetrics
  /** Sampling defaults from the model's generation_config.json, as vLLM applies them. */
  defaults: SamplingDefaults
  /** --tool-call-parser (absent: hermes). */
  toolCallParser?: ToolCallParserName
}

/** How one endpoint shapes its responses. */
export interface ResponseShape {
  idPrefix: string
  /** gen_ai.operation.name */
  operation: 'text_completion' | 'chat'
  /** A streamed chunk carrying `text` (and the finish reason on the last one); null: nothing to send yet. */
  chunk(base: ChunkBase, text: string, finishReason: FinishReason | null, first: boolean): Record<string, unknown> | null
  /** The non-streamed response. */
  whole(base: ChunkBase, text: string, finishReason: FinishReason, usage: Usage): Record<string, unknown>
  /** The stream_options.include_usage chunk. */
  usageChunk(base: ChunkBase, usage: Usage): Record<string, unknown>
}

export interface ChunkBase {
  id: string
  created: number
  model: string
}

export function newRid(): string {
  return randomBytes(12).toString('hex')
}

export function stopsFrom(body: SamplingBody): string[] {
  if (body.stop == null) return []
  return typeof body.stop === 'string' ? [body.stop] : body.stop
}

export function checkModel(body: SamplingBody, info: ServingInfo): void {
  if (body.model !== info.modelName) {
    throw new SpanserveError('SPANSERVE_ERR_MODEL_NOT_FOUND', `The model \`${body.model}\` does not exist; this server serves \`${info.modelName}\``, 'model')
  }
}

export interface GenerateInput {
  text: string | null
  inputIds: number[] | null
  messages: ChatMessage[] | null
  /** Tools for the chat template (chat only). */
  tools?: ChatTool[] | null
  maxTokens: number
}

/** Run one generation request through the engine and answer it, streamed or whole. */
export async function serveGeneration(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: Engine,
  info: ServingInfo,
  body: SamplingBody,
  input: GenerateInput,
  shape: ResponseShape,
): Promise<void> {
  checkModel(body, info)
  const rid = newRid()
  const timing: Timing = { startMs: performance.now(), firstTokenMs: null }
  const sampling = samplingFrom(body, info.defaults, input.maxTokens)
  const base: ChunkBase = { id: `${shape.idPrefix}-${rid}`, created: Math.floor(Date.now() / 1000), model: info.modelName }
  const otel = (request as unknown as { opentelemetry?: () => { context: Context | null; instrumented?: boolean } }).opentelemetry?.()
  const { carrier, traceparent } = startRequestTrace({
    rid,
    httpContext: otel && otel.instrumented !== false ? (otel.context ?? undefined) : undefined,
    operation: shape.operation,
    model: info.modelName,
    maxTokens: input.maxTokens,
    sampling,
    prompt: input.text ?? (input.messages ? JSON.stringify(input.messages) : JSON.stringify(input.inputIds)),
  })
  const req: GenerateReqInput = {
    type: 'generate',
    rid,
    trace: carrier,
    ...input,
    sampling,
    stop: stopsFrom(body),
    ignoreEos: body.ignore_eos === true,
    arrivalMs: Date.now(),
  }
  const requestId = (request.headers['x-request-id'] as string | undefined) ?? rid
  const headers: Record<string, string> = { 'x-request-id': /^[\w.:-]{1,128}$/.test(requestId) ? requestId : rid }
  // The caller can find its trace: the request root's traceparent comes back on every response.
  if (traceparent) headers.traceparent = traceparent
  const res = reply.raw
  let done = false
  // A client that hangs up aborts its request and frees its KV at once.
  res.on('close', () => {
    if (done) return
    done = true
    engine.abort(rid, 'client disconnected')
    abortRequestTrace(rid, 'client disconnected')
    info.metrics.failed('client_disconnected')
    request.log.info({ rid, trace_id: traceIds?.traceId, span_id: traceIds?.spanId }, 'request aborted: client disconnected')
  })
  let completion = ''
  // The request's trace, for exemplars and log lines (null when untraced).
  const traceIds = traceparent ? { traceId: traceparent.split('-')[1]!, spanId: traceparent.split('-')[2]! } : null
  let lastOutputMs = 0
  const onFirst = () => {
    const now = performance.now()
    if (timing.firstTokenMs === null) {
      timing.firstTokenMs = now
      firstToken(rid)
    } else {
      info.metrics.tokenGap((now - lastOutputMs) / 1000, traceIds)
    }
    lastOutputMs = now
  }
  const onFinish = (item: StrOutput) => {
    finishRequestTrace(rid, base.id, info.modelName, item, completion, timing)
    const e2eMs = performance.now() - timing.startMs
    const ttftMs = timing.firstTokenMs === null ? null : timing.firstTokenMs - timing.startMs
    info.metrics.finished({
      finishReason: item.finishReason ?? 'stop',
      promptTokens: item.promptTokens,
      completionTokens: item.completionTokens,
      ttftSeconds: ttftMs === null ? null : ttftMs / 1000,
      e2eSeconds: e2eMs / 1000,
      queueSeconds: item.stats ? item.stats.queueMs / 1000 : null,
      trace: traceIds,
    })
    request.log.info(
      { rid, trace_id: traceIds?.traceId, span_id: traceIds?.spanId, finish_reason: item.finishReason, prompt_tokens: item.promptTokens, completion_tokens: item.completionTokens, e2e_ms: Math.round(e2eMs * 10) / 10, ttft_ms: ttftMs === null ? null : Math.round(ttftMs * 10) / 10, resumed: resumes },
      'request finished',
    )
  }
  const onFailure = (err: SpanserveError) => {
    failRequestTrace(rid, err)
    info.metrics.failed(err.code)
    request.log.warn({ rid, trace_id: traceIds?.traceId, span_id: traceIds?.spanId, code: err.code, reason: err.message }, 'request failed')
  }
  let timer: NodeJS.Timeout | undefined
  /** Times the request was lost with a dead process and resumed (engine.ts). */
  let resumes = 0
  const submit = (sink: RequestSink) => {
    try {
      engine.submit(req, { ...sink, onResumed: () => void resumes++ })
    } catch (err) {
      done = true
      // Thrown on: the error handler answers, logs and counts it.
      failRequestTrace(rid, err as SpanserveError)
      throw err
    }
    dispatched(rid)
    if (info.requestTimeoutMs > 0) {
      timer = setTimeout(() => stopEarly(sink, new SpanserveError('SPANSERVE_ERR_TIMEOUT', `the request ran longer than ${info.requestTimeoutMs / 1000} s`)), info.requestTimeoutMs)
    }
  }
  /** End a request from this side: the pipeline drops it and frees its KV; the client gets `err`. */
  const stopEarly = (sink: RequestSink, err: SpanserveError) => {
    if (done) return
    engine.abort(rid, err.code)
    sink.onError(err)
  }
  res.on('close', () => clearTimeout(timer))

  if (body.stream) {
    const includeUsage = body.stream_options?.include_usage === true
    // vLLM's continuous_usage_stats: every chunk carries the usage so far.
    const continuousUsage = includeUsage && body.stream_options?.continuous_usage_stats === true
    let first = true
    let started = false
    const begin = () => {
      if (started) return
      started = true
      reply.hijack()
      startSse(res, headers, info.streamStallTimeoutMs)
    }
    await new Promise<void>((resolve) => {
      const sink: RequestSink = {
        onOutput: (item: StrOutput) => {
          begin()
          onFirst()
          completion += item.text
          if (res.writableLength > info.streamBufferLimit && item.finishReason === null) {
            stopEarly(sink, new SpanserveError('SPANSERVE_ERR_SLOW_READER', `more than ${info.streamBufferLimit} bytes waited for the client; the request was ended`))
            return
          }
          if (item.text !== '' || item.finishReason !== null || first) {
            const chunk = shape.chunk(base, item.text, item.finishReason, first)
            first = false
            if (chunk !== null) {
              if (item.finishReason !== null || continuousUsage) chunk.usage = usageOf(item)
              sendEvent(res, chunk)
            }
          }
          if (item.finishReason !== null) {
            done = true
            onFinish(item)
            if (includeUsage) sendEvent(res, shape.usageChunk(base, usageOf(item)))
            endSse(res)
            resolve()
          }
        },
        onError: (err) => {
          done = true
          onFailure(err)
          if (!started) {
            // Nothing sent yet: answer with a plain HTTP error.
            void reply.code(err.status).headers({ ...headers, ...errorHeaders(err) }).send(errorBody(err))
          } else {
            sendEvent(res, errorBody(err))
            endSse(res)
          }
          resolve()
        },
      }
      submit(sink)
    })
    return
  }

  await new Promise<void>((resolve) => {
    submit({
      onOutput: (item) => {
        onFirst()
        completion += item.text
        if (item.finishReason === null) return
        done = true
        onFinish(item)
        void reply.headers(headers).send(shape.whole(base, completion, item.finishReason, usageOf(item)))
        resolve()
      },
      onError: (err) => {
        done = true
        onFailure(err)
        void reply.code(err.status).headers({ ...headers, ...errorHeaders(err) }).send(errorBody(err))
        resolve()
      },
    })
  })
}

function usageOf(item: StrOutput): Usage {
  return { prompt_tokens: item.promptTokens, completion_tokens: item.completionTokens, total_tokens: item.promptTokens + item.completionTokens }
}
