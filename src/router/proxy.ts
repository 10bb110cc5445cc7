/**
 * One request through the router: choose an instance (policy.ts), send it the client's own bytes,
 * and stream the answer back as it comes (each upstream chunk is written as it arrives; SSE is not
 * buffered). An attempt that fails before any response byte (connection refused or reset, or a 503
 * from an instance that is draining or not ready) is retried once on another healthy instance; once
 * the answer has started, it is the client's. The instance's load counts the request until its
 * answer has been sent or the client has gone. Upstream calls are node:http over keep-alive
 * connections (upstream.ts), the instance's response piped to the client.
 *
 * Prefill/decode disaggregation (a `prefill` set given): a generation request becomes a pair under
 * one bootstrap room, a random integer below 2^53. The prefill instance is chosen by the policy over
 * the prefill instances (their prefix caches are where a prompt's KV is), the decode instance is the
 * least loaded; both get the client's JSON with `bootstrap_host` and `bootstrap_port` (the decode
 * instance's host and the bootstrap port its /health reports) and `bootstrap_room` added, the prefill
 * one also `stream: false` (without `stream_options`). Both are sent at once: the decode instance's
 * answer is the client's, streamed as above; the prefill instance's (one token) is read and
 * discarded. A prefill request that fails (no answer, or a 5xx) is sent once more to another prefill
 * instance with the same room; a decode request that fails before any byte is retried once as a new
 * pair (a new room, another decode instance), its prefill request cancelled. Other routes
 * (/v1/models) go to a decode instance as to a whole one.
 *
 * Tracing: with tracing on, the attempt runs under a `router_request` span whose context goes to the
 * instance as `traceparent`, so that its trace continues under the router's; with tracing off, the
 * caller's traceparent and tracestate are passed on unchanged. Under disaggregation each pair has a
 * `Bootstrap Room 0x<room in hex>` span (SGLang's name) under `router_request`, and both instances'
 * requests carry its context.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { SpanserveError } from '../errors.ts'
import type { Logger } from '../logging.ts'
import { isTracingEnabled } from '../tracing/index.ts'
import {
  ERROR_TYPE,
  HTTP_REQUEST_METHOD,
  SPANSERVE_BOOTSTRAP_ROOM,
  SPANSERVE_ROUTER_ATTEMPTS,
  SPANSERVE_ROUTER_DECISION,
  SPANSERVE_ROUTER_INSTANCE,
  SPANSERVE_ROUTER_MATCH_RATE,
  SPANSERVE_ROUTER_PREFILL_INSTANCE,
  URL_PATH,
} from '../tracing/attributes.ts'
import { CLIENT_HEADER, clientId } from '../http/client-id.ts'
import type { Instance, InstanceSet } from './instances.ts'
import type { PrefillOutcome, RouterMetrics } from './metrics.ts'
import { choose, leastLoaded, type PolicyOptions } from './policy.ts'
import { Upstream, type UpstreamError } from './upstream.ts'

export interface ProxyOptions {
  /** The instances; under disaggregation, the decode instances. */
  instances: InstanceSet
  /** The prefill instances: prefill/decode disaggregation. Default none. */
  prefill?: InstanceSet | null
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
  /** The parsed body of a generation request (for the bootstrap fields under disaggregation). */
  json?: unknown
}

/** Request headers passed to the instance as they came. */
const FORWARDED = ['content-type', 'accept', 'authorization', 'user-agent', 'traceparent', 'tracestate', 'baggage']
/** Response headers that belong to one connection, not to the answer. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'])

/** A bootstrap room: a uniformly random integer in [0, 2^53), from the CSPRNG (SGLang draws from [0, 2^63)). */
export function newBootstrapRoom(): number {
  const b = randomBytes(8)
  return (b.readUInt32BE(0) & 0x1fffff) * 2 ** 32 + b.readUInt32BE(4)
}

/** SGLang's span name for a room, f"Bootstrap Room {hex(room)}". */
export const bootstrapRoomSpanName = (room: number): string => `Bootstrap Room 0x${room.toString(16)}`

/** The instance's host as bootstrap_host: a URL's hostname, an IPv6 address without its brackets. */
export const bootstrapHost = (url: string): string => new URL(url).hostname.replace(/^\[(.*)\]$/, '$1')

/** The two bodies of a pair: the client's JSON with the room's fields; the prefill one answers at once, not streamed. */
export function pairBodies(json: Record<string, unknown>, host: string, port: number, room: number): { prefill: Buffer; decode: Buffer } {
  const decode = { ...json, bootstrap_host: host, bootstrap_port: port, bootstrap_room: room }
  const prefill: Record<string, unknown> = { ...decode, stream: false }
  delete prefill.stream_options
  return { prefill: Buffer.from(JSON.stringify(prefill)), decode: Buffer.from(JSON.stringify(decode)) }
}

interface Served {
  instance: Instance
  response: IncomingMessage
  /** Under disaggregation: the pair's room span and its prefill request, settled when that has ended. */
  room?: { span: Span | null; prefill: Promise<void> }
}

export class RouterProxy {
  private readonly upstream = new Upstream()

  constructor(private readonly opts: ProxyOptions) {}

  /** Closes the pooled connections to the instances. */
  close(): void {
    this.upstream.close()
  }

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
    const json = outgoing.json
    const pd = this.opts.prefill != null && outgoing.text !== null && json !== null && typeof json === 'object' && !Array.isArray(json)
    let served: Served
    try {
      served = pd ? await this.attemptPair(request, headers, outgoing, json as Record<string, unknown>, aborted.signal, span) : await this.attempt(request, headers, outgoing, aborted.signal, span)
    } catch (err) {
      if (span) endSpan(span, err)
      throw err
    }
    const { instance, response, room } = served
    let released = false
    const release = () => {
      if (released) return
      released = true
      instance.load--
      const err = aborted.signal.aborted ? new Error('client closed the connection') : null
      if (!aborted.signal.aborted && !response.complete) aborted.abort() // the answer broke off: cancel the prefill too
      if (room === undefined) {
        if (span) endSpan(span, err)
        return
      }
      // The spans end once the pair's prefill request has ended too.
      void room.prefill.then(() => {
        if (room.span) endSpan(room.span, err)
        if (span) endSpan(span, err)
      })
    }
    if (aborted.signal.aborted) {
      // The client left while the instance was answering.
      release()
      response.destroy()
      return reply
    }
    reply.raw.once('close', release)
    this.opts.metrics.answered(instance)
    span?.setAttribute('http.response.status_code', response.statusCode ?? 502)
    const out: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(response.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
    void reply.code(response.statusCode ?? 502).headers(out)
    return reply.send(response)
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

  /** The instances are to continue the trace under `span`. */
  private traceUnder(headers: Record<string, string>, span: Span): void {
    delete headers.traceparent
    delete headers.tracestate
    propagation.inject(trace.setSpan(context.active(), span), headers)
  }

  /** At most two attempts, on two instances. */
  private async attempt(request: FastifyRequest, headers: Record<string, string>, outgoing: Outgoing, signal: AbortSignal, span: Span | null): Promise<Served> {
    const { instances, metrics } = this.opts
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
        this.traceUnder(headers, span)
        span.setAttribute(SPANSERVE_ROUTER_ATTEMPTS, attempt)
      }
      try {
        const response = await this.upstream.send({ base: instance.url, path: request.url, method: request.method, headers, body: outgoing.body, signal })
        if (response.statusCode === 503 && attempt === 1 && candidates.length > 1) {
          response.resume()
          throw new Error('503 from the instance')
        }
        return { instance, response }
      } catch (err) {
        instance.load--
        if (signal.aborted) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'the client closed the connection')
        failure = this.failed(instance, err, attempt, span)
      }
    }
    throw new SpanserveError(
      'SPANSERVE_ERR_UNAVAILABLE',
      tried.size === 0 ? 'no healthy instance behind the router' : `the instance failed before responding (${failure}) and no other healthy instance is left`,
    )
  }

  /** An attempt on `instance` failed before any response byte: counted, logged, the instance marked down. Returns the reason. */
  private failed(instance: Instance, err: unknown, attempt: number, span: Span | null): string {
    const failure = (err as UpstreamError).code ?? (err as Error).message
    this.opts.metrics.failed(instance)
    ;(instance.role === 'prefill' ? this.opts.prefill! : this.opts.instances).markDown(instance, failure)
    span?.addEvent('attempt_failed', { [SPANSERVE_ROUTER_INSTANCE]: instance.url, [ERROR_TYPE]: failure })
    this.opts.log.warn({ instance: instance.url, instance_role: instance.role ?? undefined, attempt, reason: failure }, 'router: instance failed before responding')
    return failure
  }

  /**
   * Disaggregation: at most two pairs. Each sends its prefill and decode requests at once; the decode
   * instance's response is the answer. A pair whose decode request fails before any byte is followed
   * by a new one on another decode instance.
   */
  private async attemptPair(request: FastifyRequest, headers: Record<string, string>, outgoing: Outgoing, json: Record<string, unknown>, signal: AbortSignal, span: Span | null): Promise<Served> {
    const { instances: decodes, prefill: prefills, metrics } = this.opts
    const tried = new Set<Instance>()
    let failure = ''
    for (let attempt = 1; attempt <= 2; attempt++) {
      const candidates = decodes.healthy().filter((i) => !tried.has(i) && i.bootstrapPort !== null)
      if (candidates.length === 0) break
      const prefillCandidates = prefills!.healthy()
      if (prefillCandidates.length === 0) throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'no healthy prefill instance behind the router')
      if (attempt === 2) metrics.retried()
      const decode = leastLoaded(candidates)
      decodes.picked(decode)
      tried.add(decode)
      const prefill = this.pick(prefillCandidates, outgoing.text, null)
      const room = newBootstrapRoom()
      metrics.roomSent()
      const roomSpan = span
        ? trace.getTracer('spanserve-router').startSpan(bootstrapRoomSpanName(room), { kind: SpanKind.CLIENT, attributes: { [SPANSERVE_BOOTSTRAP_ROOM]: room } }, trace.setSpan(context.active(), span))
        : null
      if (span && roomSpan) {
        span.setAttributes({ [SPANSERVE_ROUTER_ATTEMPTS]: attempt, [SPANSERVE_ROUTER_INSTANCE]: decode.url })
        this.traceUnder(headers, roomSpan)
      }
      const bodies = pairBodies(json, bootstrapHost(decode.url), decode.bootstrapPort!, room)
      // The pair's own signal: the client leaving, or this decode attempt failing, cancels its prefill request.
      const pair = new AbortController()
      const onAbort = () => pair.abort()
      signal.addEventListener('abort', onAbort, { once: true })
      const prefillDone = this.prefill(request, { ...headers }, bodies.prefill, prefill, room, pair.signal, roomSpan).finally(() => signal.removeEventListener('abort', onAbort))
      decode.load++
      try {
        const response = await this.upstream.send({ base: decode.url, path: request.url, method: request.method, headers, body: bodies.decode, signal })
        if (response.statusCode === 503 && attempt === 1 && candidates.length > 1) {
          response.resume()
          throw new Error('503 from the instance')
        }
        return { instance: decode, response, room: { span: roomSpan, prefill: prefillDone } }
      } catch (err) {
        decode.load--
        pair.abort()
        await prefillDone
        if (roomSpan) endSpan(roomSpan, err)
        if (signal.aborted) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'the client closed the connection')
        failure = this.failed(decode, err, attempt, span)
      }
    }
    throw new SpanserveError(
      'SPANSERVE_ERR_UNAVAILABLE',
      tried.size === 0 ? 'no healthy decode instance behind the router' : `the decode instance failed before responding (${failure}) and no other healthy decode instance is left`,
    )
  }

  /**
   * A pair's prefill request, its answer read and discarded; on no answer or a 5xx, once more on
   * another prefill instance with the same room. Never rejects: the decode instance prefills itself
   * when the KV does not come.
   */
  private async prefill(request: FastifyRequest, headers: Record<string, string>, body: Buffer, first: Instance, room: number, signal: AbortSignal, span: Span | null): Promise<void> {
    const { prefill: prefills, metrics, log } = this.opts
    let instance: Instance | null = first
    let outcome: PrefillOutcome = 'failed'
    for (let attempt = 1; instance !== null; attempt++) {
      instance.load++
      span?.setAttribute(SPANSERVE_ROUTER_PREFILL_INSTANCE, instance.url)
      let retry = false
      try {
        const response = await this.upstream.send({ base: instance.url, path: request.url, method: request.method, headers, body, signal })
        metrics.answered(instance)
        const status = response.statusCode ?? 502
        await drain(response)
        if (status >= 200 && status < 300) outcome = 'ok'
        else {
          if (status === 503) prefills!.markDown(instance, '503 from the instance')
          log.warn({ instance: instance.url, status, bootstrap_room: room, attempt }, 'router: the prefill instance answered with an error')
          span?.addEvent('prefill_failed', { [SPANSERVE_ROUTER_INSTANCE]: instance.url, [ERROR_TYPE]: String(status) })
          outcome = 'http_error'
          retry = status >= 500
        }
      } catch (err) {
        if (signal.aborted) outcome = 'cancelled'
        else {
          this.failed(instance, err, attempt, span)
          outcome = 'failed'
          retry = true
        }
      } finally {
        instance.load--
      }
      if (!retry || attempt === 2 || signal.aborted) break
      const others = prefills!.healthy().filter((i) => i !== instance)
      instance = others.length === 0 ? null : this.pick(others, null, null)
      if (instance !== null) metrics.retried()
    }
    if (signal.aborted && outcome !== 'ok') outcome = 'cancelled'
    metrics.prefillEnded(outcome)
    if (outcome === 'failed') log.warn({ bootstrap_room: room }, 'router: no prefill instance answered; the decode instance prefills itself after its transfer timeout')
  }

  /** The policy's choice, recorded in the chosen instance's tree and the metrics. */
  private pick(candidates: Instance[], text: string | null, span: Span | null): Instance {
    const { instance, decision, matchRate } = choose(candidates, text ?? '', this.opts.policy)
    ;(instance.role === 'prefill' ? this.opts.prefill! : this.opts.instances).picked(instance)
    if (text !== null) {
      instance.tree.insert(text)
      this.opts.metrics.decided(decision)
    }
    span?.setAttributes({ [SPANSERVE_ROUTER_INSTANCE]: instance.url, [SPANSERVE_ROUTER_DECISION]: decision, [SPANSERVE_ROUTER_MATCH_RATE]: matchRate })
    return instance
  }
}

/** Reads a response to its end (or its error), keeping nothing. */
function drain(response: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    response.on('error', () => resolve())
    response.on('close', () => resolve())
    response.resume()
  })
}

function endSpan(span: Span, err: unknown): void {
  if (err !== null) span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
  span.end()
}
