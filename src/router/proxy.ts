/**
 * One request through the router: choose an instance (policy.ts), send it the client's own bytes,
 * and stream the answer back as it comes (each upstream chunk is written as it arrives; SSE is not
 * buffered). An attempt that fails before any response byte (connection refused or reset, or a 503
 * from an instance that is draining or not ready) is retried once on another healthy instance; once
 * the answer has started, it is the client's. The instance's load counts the request until its
 * answer has been sent or the client has gone.
 *
 * Tracing: with tracing on, the attempt runs under a `router_request` span whose context goes to the
 * instance as `traceparent`, so that its trace continues under the router's; with tracing off, the
 * caller's traceparent and tracestate are passed on unchanged.
 */
import { Readable } from 'node:stream'
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { SpanserveError } from '../errors.ts'
import type { Logger } from '../logging.ts'
import { isTracingEnabled } from '../tracing/index.ts'
import { ERROR_TYPE, HTTP_REQUEST_METHOD, SPANSERVE_ROUTER_ATTEMPTS, SPANSERVE_ROUTER_DECISION, SPANSERVE_ROUTER_INSTANCE, SPANSERVE_ROUTER_MATCH_RATE, URL_PATH } from '../tracing/attributes.ts'
import { CLIENT_HEADER, clientId } from '../http/client-id.ts'
import type { Instance, InstanceSet } from './instances.ts'
import type { RouterMetrics } from './metrics.ts'
import { choose, type PolicyOptions } from './policy.ts'

export interface ProxyOptions {
  instances: InstanceSet
  policy: PolicyOptions
  metrics: RouterMetrics
  log: Logger
  /** Whether the router itself requires an API key (then a bearer token tells no client apart). */
  apiKeyConfigured: boolean
}

/** What goes upstream: the client's bytes, and the prompt text for the policy (null: no prompt, least loaded). */
export interface Outgoing {
  body: Buffer | undefined
  text: string | null
}

/** Request headers passed to the instance as they came. */
const FORWARDED = ['content-type', 'accept', 'authorization', 'user-agent', 'traceparent', 'tracestate', 'baggage']
/** Response headers that belong to one connection, not to the answer. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'])

export class RouterProxy {
  constructor(private readonly opts: ProxyOptions) {}

  async handle(request: FastifyRequest, reply: FastifyReply, outgoing: Outgoing): Promise<FastifyReply> {
    const headers = this.headersFor(request)
    const span = isTracingEnabled()
      ? trace.getTracer('spanserve-router').startSpan('router_request', { kind: SpanKind.CLIENT, attributes: { [HTTP_REQUEST_METHOD]: request.method, [URL_PATH]: request.url.split('?')[0]! } })
      : null
    const aborted = new AbortController()
    // 'close' before the answer was finished: the client went away; the instance is told by the abort.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) aborted.abort()
    })
    let served: Served
    try {
      served = await this.attempt(request, headers, outgoing, aborted.signal, span)
    } catch (err) {
      if (span) endSpan(span, err)
      throw err
    }
    const { instance, response } = served
    let released = false
    const release = () => {
      if (released) return
      released = true
      instance.load--
      if (span) endSpan(span, aborted.signal.aborted ? new Error('client closed the connection') : null)
    }
    if (aborted.signal.aborted) {
      // The client left while the instance was answering.
      release()
      await response.body?.cancel().catch(() => undefined)
      return reply
    }
    reply.raw.once('close', release)
    this.opts.metrics.answered(instance)
    span?.setAttribute('http.response.status_code', response.status)
    const out: Record<string, string> = {}
    response.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.has(name)) out[name] = value
    })
    void reply.code(response.status).headers(out)
    if (response.body === null) return reply.send()
    return reply.send(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>))
  }

  private headersFor(request: FastifyRequest): Record<string, string> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' }
    for (const name of FORWARDED) {
      const value = request.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    // Behind the router every client has the router's address: name it, so the instance's fair
    // scheduling still tells clients apart (src/http/client-id.ts).
    headers[CLIENT_HEADER] = clientId(request, this.opts.apiKeyConfigured)
    return headers
  }

  /** At most two attempts, on two instances. */
  private async attempt(request: FastifyRequest, headers: Record<string, string>, outgoing: Outgoing, signal: AbortSignal, span: Span | null): Promise<Served> {
    const { instances, metrics, log } = this.opts
    const tried = new Set<Instance>()
    let failure = ''
    for (let attempt = 1; attempt <= 2; attempt++) {
      const candidates = instances.healthy().filter((i) => !tried.has(i))
      if (candidates.length === 0) break
      if (attempt === 2) metrics.retried()
      const instance = this.pick(candidates, outgoing.text, span)
      tried.add(instance)
      instance.load++
      if (span) {
        // The instance's spans go under this one.
        delete headers.traceparent
        delete headers.tracestate
        propagation.inject(trace.setSpan(context.active(), span), headers)
        span.setAttribute(SPANSERVE_ROUTER_ATTEMPTS, attempt)
      }
      try {
        const response = await fetch(instance.url + request.url, { method: request.method, headers, body: outgoing.body as Uint8Array<ArrayBuffer> | undefined, signal, redirect: 'manual' })
        if (response.status === 503 && attempt === 1 && candidates.length > 1) {
          await response.body?.cancel()
          throw new Error('503 from the instance')
        }
        return { instance, response }
      } catch (err) {
        instance.load--
        if (signal.aborted) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'the client closed the connection')
        failure = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message
        metrics.failed(instance)
        instances.markDown(instance, failure)
        span?.addEvent('attempt_failed', { [SPANSERVE_ROUTER_INSTANCE]: instance.url, [ERROR_TYPE]: failure })
        log.warn({ instance: instance.url, attempt, reason: failure }, 'router: instance failed before responding')
      }
    }
    throw new SpanserveError(
      'SPANSERVE_ERR_UNAVAILABLE',
      tried.size === 0 ? 'no healthy instance behind the router' : `the instance failed before responding (${failure}) and no other healthy instance is left`,
    )
  }

  /** The policy's choice, recorded in the chosen instance's tree and the metrics. */
  private pick(candidates: Instance[], text: string | null, span: Span | null): Instance {
    const { instance, decision, matchRate } = choose(candidates, text ?? '', this.opts.policy)
    this.opts.instances.picked(instance)
    if (text !== null) {
      instance.tree.insert(text)
      this.opts.metrics.decided(decision)
    }
    span?.setAttributes({ [SPANSERVE_ROUTER_INSTANCE]: instance.url, [SPANSERVE_ROUTER_DECISION]: decision, [SPANSERVE_ROUTER_MATCH_RATE]: matchRate })
    return instance
  }
}

interface Served {
  instance: Instance
  response: Response
}

function endSpan(span: Span, err: unknown): void {
  if (err !== null) span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
  span.end()
}
