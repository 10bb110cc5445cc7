/**
 * One generation request from submission to its end, whichever way it is answered: submits it to the
 * engine, aborts it when the client hangs up, times it out, and records its first token, finish or
 * failure in its trace, the metrics and the log.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StrOutput, TextLogprobs } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import type { EngineClient, RequestSink } from '../../engine-client/engine-client.ts'
import { sendError } from '../../../http/http-errors.ts'
import type { ServingInfo } from '../serving-info.ts'
import { abortRequestTrace, dispatched, failRequestTrace, finishRequestTrace, firstToken, keptRequestTrace, type Timing } from '../../engine-client/request-trace.ts'
import { isHeadSampled, isTraced, keepReason, tailKeepOptions, tailRequestStarted, type TailKeepOptions } from '../../../tracing/index.ts'
import type { BuiltRequest } from './request.ts'
import type { GenerationParams } from './params.ts'
import { LogprobsFormatter } from './logprobs.ts'

/**
 * max_tokens 0 with echo, run as 1 token: the output as if nothing was generated (no text, no
 * completion token, finish "length" as vLLM's), its logprobs kept for the prompt's part.
 */
function promptOnly(item: StrOutput): StrOutput {
  return { ...item, text: '', completionTokens: 0, finishReason: item.finishReason === null ? null : 'length' }
}

export class GenerationRun {
  /** Answered, failed or aborted: nothing more is sent. */
  done = false
  /** The text so far. */
  completion = ''
  /** Each output token's logprobs so far, when the request asked (see logprobs.ts). */
  readonly logprobs: TextLogprobs[] = []
  /** Sent before the first text (completions' echo: the prompt). */
  echoText = ''
  /** Echo of a token-id prompt: its text comes from its tokens, with the first output. */
  private echoFromTokens = false
  /** Shapes the logprobs when the request asked for them. */
  readonly formatter: LogprobsFormatter | null
  readonly rid: string
  private readonly timing: Timing
  private lastOutputMs = 0
  /** The longest gap between two outputs so far: only a new longest carries the trace as an exemplar. */
  private longestGapMs = -1
  /** Times the request was lost with a dead process and resumed (engine-client/engine-client.ts). */
  private resumes = 0
  private timer: NodeJS.Timeout | undefined
  /** Tail sampling's policies (--trace-keep), null when off or untraced, and once this request's end was told. */
  private keep: TailKeepOptions | null
  /** Gaps between outputs in ms, kept only for the ITL p99 policy. */
  private readonly gapsMs: number[] | null

  constructor(
    readonly request: FastifyRequest,
    readonly reply: FastifyReply,
    private readonly engine: EngineClient,
    readonly info: ServingInfo,
    readonly built: BuiltRequest,
    private readonly params: GenerationParams,
    startMs: number,
  ) {
    this.rid = built.req.rid
    // A formatter per sequence: the legacy shape's text offsets run on through its chunks.
    this.formatter = params.logprobs ? new LogprobsFormatter(params.logprobs.kind, params.echo, !params.echoOnly) : null
    if (params.echo) {
      if (built.req.text !== null) this.echoText = built.req.text
      else this.echoFromTokens = true
    }
    this.timing = { startMs, firstTokenMs: null }
    this.keep = built.traceIds !== null && isTraced(this.rid) ? tailKeepOptions() : null
    if (this.keep !== null) tailRequestStarted(built.traceIds!.traceId)
    this.gapsMs = this.keep !== null && this.keep.itlP99Ms > 0 && this.keep.policies.includes('slow') ? [] : null
    const res = reply.raw
    // A client that hangs up aborts its request and frees its KV at once.
    res.on('close', () => {
      clearTimeout(this.timer)
      if (this.done) return
      this.done = true
      engine.abort(this.rid, 'client disconnected')
      this.noteKeep(false)
      abortRequestTrace(this.rid, 'client disconnected')
      info.metrics.failed('client_disconnected')
      request.log.info({ rid: this.rid, ...this.logIds() }, 'request aborted: client disconnected')
    })
  }

  submit(sink: RequestSink): void {
    try {
      const onOutput = this.params.echoOnly ? (item: StrOutput) => sink.onOutput(promptOnly(item)) : sink.onOutput
      this.engine.submit(this.built.req, { ...sink, onOutput, onResumed: () => void this.resumes++ })
    } catch (err) {
      this.done = true
      this.noteKeep(true)
      // Thrown on: the error handler answers, logs and counts it.
      failRequestTrace(this.rid, err as SpanserveError)
      throw err
    }
    dispatched(this.rid)
    const { requestTimeoutMs } = this.info
    if (requestTimeoutMs > 0) {
      this.timer = setTimeout(() => this.stopEarly(sink, new SpanserveError('SPANSERVE_ERR_TIMEOUT', `the request ran longer than ${requestTimeoutMs / 1000} s`)), requestTimeoutMs)
    }
  }

  /** End a request from this side: the pipeline drops it and frees its KV; the client gets `err`. */
  stopEarly(sink: RequestSink, err: SpanserveError): void {
    if (this.done) return
    this.engine.abort(this.rid, err.code)
    sink.onError(err)
  }

  /**
   * A client that does not read: more than --stream-buffer-limit bytes wait for it while the
   * sequence still runs (`item` not its last). The request stops early with the slow-reader error;
   * true when it did.
   */
  stopIfSlowReader(sink: RequestSink, item: StrOutput): boolean {
    const limit = this.info.streamBufferLimit
    if (this.reply.raw.writableLength <= limit || item.finishReason !== null) return false
    this.stopEarly(sink, new SpanserveError('SPANSERVE_ERR_SLOW_READER', `more than ${limit} bytes waited for the client; the request was ended`))
    return true
  }

  /** Text came: the first-token event, or the gap since the last output. */
  output(item: StrOutput): void {
    const now = performance.now()
    if (this.timing.firstTokenMs === null) {
      this.timing.firstTokenMs = now
      firstToken(this.rid)
    } else {
      const gapMs = now - this.lastOutputMs
      // The request's trace goes with its longest gaps only (each bucket keeps one exemplar anyway):
      // an exemplar per token cost every traced token, and a slow gap is the one worth a trace.
      const longest = gapMs > this.longestGapMs
      if (longest) this.longestGapMs = gapMs
      this.info.metrics.tokenGap(gapMs / 1000, longest ? this.built.traceIds : null)
      this.gapsMs?.push(gapMs)
    }
    this.lastOutputMs = now
    this.completion += item.text
    if (item.logprobs) this.logprobs.push(item.logprobs)
    if (this.echoFromTokens && item.logprobs?.prompt) {
      this.echoText = item.logprobs.prompt.map((p) => p.token).join('')
      this.echoFromTokens = false
    }
  }

  finish(item: StrOutput): void {
    this.done = true
    const { info, timing, rid } = this
    this.noteKeep(false)
    finishRequestTrace(rid, this.built.base.id, info.modelName, item, this.completion, timing)
    const e2eMs = performance.now() - timing.startMs
    const ttftMs = timing.firstTokenMs === null ? null : timing.firstTokenMs - timing.startMs
    info.metrics.finished({
      finishReason: item.finishReason ?? 'stop',
      promptTokens: item.promptTokens,
      completionTokens: item.completionTokens,
      ttftSeconds: ttftMs === null ? null : ttftMs / 1000,
      e2eSeconds: e2eMs / 1000,
      queueSeconds: item.stats ? item.stats.queueMs / 1000 : null,
      trace: this.built.traceIds,
      client: this.built.req.client,
    })
    this.request.log.info(
      {
        rid,
        ...this.logIds(),
        client: this.built.req.client,
        finish_reason: item.finishReason,
        prompt_tokens: item.promptTokens,
        completion_tokens: item.completionTokens,
        e2e_ms: Math.round(e2eMs * 10) / 10,
        ttft_ms: ttftMs === null ? null : Math.round(ttftMs * 10) / 10,
        resumed: this.resumes,
      },
      'request finished',
    )
  }

  /**
   * The request failed: recorded (fail), then answered with a plain HTTP error while nothing has been
   * streamed, else ended in the stream by `endStream` (each API has its own error event).
   */
  answerError(err: SpanserveError, streamed: boolean, endStream: () => void): void {
    this.fail(err)
    if (streamed) endStream()
    else sendError(this.reply, this.built.headers, err)
  }

  fail(err: SpanserveError): void {
    this.done = true
    this.noteKeep(true)
    failRequestTrace(this.rid, err)
    this.info.metrics.failed(err.code)
    this.request.log.warn({ rid: this.rid, ...this.logIds(), client: this.built.req.client, code: err.code, reason: err.message }, 'request failed')
  }

  /** Tail sampling: the request ended; whether a keep policy (or the head rate) keeps its trace, recorded before its root ends. */
  private noteKeep(failed: boolean): void {
    const keep = this.keep
    const traceId = this.built.traceIds?.traceId
    if (keep === null || traceId === undefined) return
    this.keep = null
    const { startMs, firstTokenMs } = this.timing
    const reason =
      keepReason(keep, { failed, resumed: this.resumes > 0, ttftMs: firstTokenMs === null ? null : firstTokenMs - startMs, gapsMs: this.gapsMs, e2eMs: performance.now() - startMs }) ??
      (isHeadSampled(traceId) ? 'sampled' : undefined)
    keptRequestTrace(this.rid, traceId, reason)
  }

  private logIds(): { trace_id: string | undefined; span_id: string | undefined } {
    return { trace_id: this.built.traceIds?.traceId, span_id: this.built.traceIds?.spanId }
  }
}
