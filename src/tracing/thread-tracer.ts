/**
 * One "thread" of SGLang's model (in Node: one process, or one role inside it) and the
 * contexts of the requests it is working on: request → thread span → slices.
 * Every method is a no-op for a rid it does not trace (unsampled, never started, finished).
 */
import { presetSpanId } from './preset-ids.ts'
import { ROOT_CONTEXT, SpanStatusCode, context as apiContext, trace as apiTrace, type Attributes, type Context, type HrTime, type Link, type Span, type SpanContext } from '@opentelemetry/api'
import {
  SPANSERVE_ABORT_REASON,
  SPANSERVE_DECODE_STEPS,
  SPANSERVE_DP_RANK,
  SPANSERVE_LINK_PROCESS,
  SPANSERVE_LINK_PROCESS_PID,
  SPANSERVE_LINK_REASON,
  SPANSERVE_REQUEST_ID,
  SPANSERVE_THREAD_LABEL,
  SPANSERVE_TP_RANK,
} from './attributes.ts'
import { ANONYMOUS_SLICE, EVENT, REQUEST_ROOT_SPAN, SLICE, sliceLevel, sliceName } from './names.ts'
import { isSampled, makeCarrier, parseTraceparent, readCarrier } from './propagation.ts'
import { runtime } from './runtime.ts'
import { nsToHrTime, optionalHrTime } from './time.ts'
import { RequestContext } from './request-context.ts'
import { SliceBatch } from './finished-slice.ts'
import { markDetail } from './flight-recorder.ts'
import { threadSpanEnded, threadSpanStarted } from './slice-marks.ts'
import { errorMessage, linkTo, recordError, remoteContext } from './span-helpers.ts'
import type { CarrierInput, CarrierLink, ReqFinishOptions, ReqStartOptions, SliceEndOptions, SliceRef, SliceStartOptions, TraceCalls, TraceCarrier, TraceLevel } from './types.ts'

const tracers = new Set<ThreadTracer>()
let live = 0

/** Requests whose contexts are still held in this process (all threads). */
export function liveRequestCount(): number {
  return runtime.offload ? runtime.offload.live : live
}

/** Ends every open span and drops every context: used on shutdown. */
export function releaseAll(): void {
  for (const t of tracers) t.releaseAll()
  live = 0
}

export class ThreadTracer implements TraceCalls {
  private readonly reqs = new Map<string, RequestContext>()
  private label: string
  private tpRank: number | undefined
  private dpRank: number | undefined
  private spanName = ''
  private spanNameHost = '\0'
  /** On this thread's spans only: slices do not repeat them (see batchSlice). */
  private rankAttrs: Attributes = {}

  constructor(label: string, tpRank?: number, dpRank?: number) {
    this.label = label
    this.tpRank = tpRank
    this.dpRank = dpRank
    this.updateRankAttrs()
    tracers.add(this)
  }

  /** SGLang's trace_set_thread_info: names this thread's spans from now on. */
  setThreadInfo(label: string, tpRank?: number, dpRank?: number): void {
    this.label = label
    this.tpRank = tpRank
    this.dpRank = dpRank
    this.spanNameHost = '\0'
    this.updateRankAttrs()
  }

  /** e.g. `Worker [TP 1] [DP 0] [host 1234]`, as SGLang names thread spans. */
  threadSpanName(): string {
    if (this.spanNameHost !== runtime.hostName) {
      const tp = this.tpRank === undefined ? '' : ` [TP ${this.tpRank}]`
      const dp = this.dpRank === undefined ? '' : ` [DP ${this.dpRank}]`
      this.spanName = `${this.label}${tp}${dp} [${runtime.hostName} ${process.pid}]`
      this.spanNameHost = runtime.hostName
    }
    return this.spanName
  }

  get size(): number {
    return this.reqs.size
  }

  /** True when rid is traced here (e.g. to skip building attributes for untraced requests). */
  isTraced(rid: string): boolean {
    return runtime.enabled && this.reqs.has(rid)
  }

  /**
   * Starts tracing rid in this thread. With root: creates the request root span (child of the
   * carrier's context when given, else of the active context, e.g. the HTTP server span).
   * Without: continues the request from the carrier; no carrier or an unsampled one means the
   * rid is not traced here at all.
   */
  reqStart(rid: string, carrier: CarrierInput, opts?: ReqStartOptions): void {
    const tracer = runtime.tracer
    if (!runtime.enabled || tracer === undefined) return
    const existing = this.reqs.get(rid)
    if (existing !== undefined) {
      this.adoptPrev(existing, carrier)
      return
    }
    const startTime = optionalHrTime(opts?.ts)
    const c = carrier == null ? null : readCarrier(carrier)
    let rc: RequestContext
    if (opts?.root === true) {
      const parentCtx = c === null ? apiContext.active() : remoteContext(c, false)
      const root = tracer.startSpan(REQUEST_ROOT_SPAN, { startTime, attributes: opts.attributes }, parentCtx)
      if (!root.isRecording()) {
        root.end()
        return
      }
      root.setAttribute(SPANSERVE_REQUEST_ID, rid)
      const rootCtx = apiTrace.setSpan(ROOT_CONTEXT, root)
      // The root's own trace state (inherited from its parent) travels on; see makeCarrier.
      rc = new RequestContext(root.spanContext(), undefined, rootCtx)
      rc.root = root
      rc.thread = this.startThreadSpan(rid, rootCtx, startTime, undefined, undefined)
    } else {
      if (c === null) return
      const rootSc = parseTraceparent(c.traceparent)
      if (rootSc === null || !isSampled(rootSc)) return
      const parentCtx = remoteContext(c, true)
      const thread = this.startThreadSpan(rid, parentCtx, startTime, opts?.attributes, c.links)
      if (!thread.isRecording()) {
        thread.end()
        return
      }
      rc = new RequestContext(rootSc, c.tracestate, ROOT_CONTEXT)
      rc.thread = thread
      rc.prev = c.prev === undefined ? undefined : (parseTraceparent(c.prev) ?? undefined)
      rc.links = c.links
    }
    rc.threadCtx = apiTrace.setSpan(ROOT_CONTEXT, rc.thread!)
    threadSpanStarted(rc.thread!.spanContext().spanId, rid)
    this.reqs.set(rid, rc)
    live++
  }

  /**
   * SGLang's trace_set_proc_propagate_context: a carrier arrived for rid. A rid already traced
   * here takes the carrier's previous slice as the one its next slice links to; otherwise this
   * starts the rid as reqStart(rid, carrier) does.
   */
  setPropagateContext(rid: string, carrier: CarrierInput): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) this.reqStart(rid, carrier)
    else this.adoptPrev(rc, carrier)
  }

  /** SGLang's trace_get_proc_propagate_context: the carrier to put in the outgoing message. */
  getPropagateContext(rid: string): TraceCarrier | null {
    if (!runtime.enabled) return null
    const rc = this.reqs.get(rid)
    if (rc === undefined) return null
    return makeCarrier(rc.rootSc, this.currentFlowSpan(rc), rc.tracestate, rc.links)
  }

  /** Ends open slices, the thread span and (server) the root span; frees rid. */
  reqFinish(rid: string, opts?: ReqFinishOptions): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    const endTime = optionalHrTime(opts?.ts)
    const error = opts?.error
    if (error !== undefined) {
      const where = this.innermostSpan(rc) ?? rc.root
      if (where !== undefined && where !== rc.root) recordError(where, error)
    }
    if (opts?.attributes !== undefined) (rc.root ?? rc.thread)?.setAttributes(opts.attributes)
    this.endThread(rc, endTime, error)
    const root = rc.root
    if (root !== undefined) {
      if (error !== undefined) recordError(root, error)
      root.end(endTime)
    }
    this.free(rid)
  }

  /** A client went away or the request was cancelled: not an error, but visible. */
  reqAbort(rid: string, reason?: string, ts?: number): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    const attrs: Attributes | undefined = reason === undefined ? undefined : { [SPANSERVE_ABORT_REASON]: reason }
    const time = optionalHrTime(ts)
    this.eventTarget(rc)?.addEvent(EVENT.aborted, attrs, time)
    if (rc.root !== undefined && rc.root !== this.eventTarget(rc)) rc.root.addEvent(EVENT.aborted, attrs, time)
    this.reqFinish(rid, { ts })
  }

  /** name null: an anonymous slice, named by the sliceEnd that closes it. */
  sliceStart(rid: string, slice: SliceRef | null, opts?: SliceStartOptions): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined || rc.thread === undefined) return
    presetSpanId(opts?.spanId)
    this.openSlice(rc, sliceName(slice), sliceLevel(slice, opts?.level, 1), optionalHrTime(opts?.ts), opts?.attributes)
    presetSpanId(undefined)
  }

  /**
   * Ends the innermost open slice named `name` (or the innermost anonymous one, which takes the
   * name); slices opened inside it and left open end with it. No match: nothing happens.
   */
  sliceEnd(rid: string, ref?: SliceRef | null, opts?: SliceEndOptions): void {
    if (!runtime.enabled) return
    const name = sliceName(ref)
    const rc = this.reqs.get(rid)
    if (rc === undefined || rc.thread === undefined) return
    const stack = rc.slices
    let i = stack.length - 1
    for (; i >= 0; i--) {
      const s = stack[i]!
      if (s.name === null || name == null || s.name === name) break
    }
    if (i < 0) return
    const endTime = optionalHrTime(opts?.ts)
    while (stack.length - 1 > i) stack.pop()!.span?.end(endTime)
    const slice = stack.pop()!
    const span = slice.span
    if (span !== undefined) {
      if (slice.name === null && name != null) span.updateName(name)
      if (opts?.attributes !== undefined) span.setAttributes(opts.attributes)
      if (opts?.error !== undefined) recordError(span, opts.error)
      span.end(endTime)
      if (slice.topLevel) rc.prev = span.spanContext()
    }
    if (opts?.threadFinish === true) {
      this.endThread(rc, endTime, undefined)
      if (rc.root === undefined) this.free(rid)
      return
    }
    if (opts?.autoNextAnon === true) this.openSlice(rc, null, slice.level, endTime, undefined)
  }

  /** An event on the innermost open slice (else the decode loop, else the thread span). */
  event(rid: string, name: string, attributes?: Attributes, ts?: number): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    this.eventTarget(rc)?.addEvent(name, attributes, optionalHrTime(ts))
  }

  /** An event on the request root span (server), else on this thread's span: one about the whole request. */
  reqEvent(rid: string, name: string, attributes?: Attributes, ts?: number): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    ;(rc.root ?? rc.thread)?.addEvent(name, attributes, optionalHrTime(ts))
  }

  /** SGLang's trace_slice_add_attr: attributes on the innermost open slice (else the thread span). */
  sliceAttrs(rid: string, attributes: Attributes): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    ;(this.innermostSpan(rc) ?? rc.thread)?.setAttributes(attributes)
  }

  /** Attributes on the request root span (server), else on this thread's span. */
  reqAttrs(rid: string, attributes: Attributes): void {
    if (!runtime.enabled) return
    const rc = this.reqs.get(rid)
    if (rc === undefined) return
    ;(rc.root ?? rc.thread)?.setAttributes(attributes)
  }

  /**
   * Records one already-finished top-level slice per traced rid of a batch step, with the
   * batch's own timestamps, e.g. the worker's one ONNX run for B requests. Cost per rid is
   * flat: one map lookup and, when traced, one span. `level` defaults to the declared slice's
   * own, else 3. Below it, decode_forward steps are folded into one decode_loop slice
   * per request (ended by the next slice or finish).
   * A slice carries the batch's attributes only: at level 3 there is one per request per step, and
   * its export cost grows with every attribute; the thread label and ranks are on its parent and
   * its resource already.
   */
  batchSlice(rids: readonly string[], slice: SliceRef, startNs: number, endNs: number, attributes?: Attributes, level?: TraceLevel): void {
    const tracer = runtime.tracer
    const sink = runtime.slices
    if (!runtime.enabled || tracer === undefined || sink === undefined) return
    const name = sliceName(slice)
    const at = sliceLevel(slice, level, 3)
    const record = at <= runtime.level
    if (!record && name !== SLICE.decodeForward) return
    // Above the exported level (the flight recorder's detail): recorded aside, and what is exported
    // (the folded decode_loop, the links between slices) stays as without the recorder.
    const detail = record && at > runtime.exportLevel
    const fold = !record || (detail && name === SLICE.decodeForward)
    let startTime: HrTime | undefined
    let batch: SliceBatch | undefined
    for (let i = 0; i < rids.length; i++) {
      const rc = this.reqs.get(rids[i]!)
      if (rc === undefined || rc.thread === undefined) continue
      if (detail) {
        batch ??= new SliceBatch(sink, name, nsToHrTime(startNs), nsToHrTime(endNs), attributes ?? {})
        batch.recordDetail(rc.thread.spanContext(), rc.prev)
      }
      if (fold) {
        if (rc.loop === undefined) {
          startTime ??= nsToHrTime(startNs)
          rc.loop = tracer.startSpan(SLICE.decodeLoop, { startTime, links: linkTo(rc.prev) }, rc.threadCtx)
          rc.prev = rc.loop.spanContext()
          rc.loopSteps = 0
        }
        rc.loopSteps++
        rc.loopEndNs = endNs
        continue
      }
      if (detail) continue
      batch ??= new SliceBatch(sink, name, nsToHrTime(startNs), nsToHrTime(endNs), attributes ?? {})
      if (rc.loop !== undefined) this.endLoop(rc)
      rc.prev = batch.record(rc.thread.spanContext(), rc.prev)
    }
  }

  /** Ends everything open without exporting errors: process shutdown. */
  releaseAll(): void {
    for (const rc of this.reqs.values()) {
      this.endThread(rc, undefined, undefined)
      rc.root?.end()
    }
    this.reqs.clear()
  }

  // ----- internals -----

  private startThreadSpan(rid: string, parentCtx: Context, startTime: HrTime | undefined, attributes: Attributes | undefined, links: CarrierLink[] | undefined): Span {
    const span = runtime.tracer!.startSpan(this.threadSpanName(), { startTime, attributes: this.rankAttrs, links: links === undefined ? undefined : spanLinks(links) }, parentCtx)
    span.setAttribute(SPANSERVE_REQUEST_ID, rid)
    if (attributes !== undefined) span.setAttributes(attributes)
    return span
  }

  private openSlice(rc: RequestContext, name: string | null, level: TraceLevel, startTime: HrTime | undefined, attributes: Attributes | undefined): void {
    const stack = rc.slices
    if (level > runtime.level) {
      stack.push({ name, level, topLevel: false, span: undefined })
      return
    }
    const parent = this.innermostSpan(rc)
    const detail = level > runtime.exportLevel
    let span: Span
    if (parent === undefined) {
      if (rc.loop !== undefined && !detail) this.endLoop(rc)
      span = runtime.tracer!.startSpan(name ?? ANONYMOUS_SLICE, { startTime, attributes, links: linkTo(rc.prev) }, rc.threadCtx)
    } else {
      span = runtime.tracer!.startSpan(name ?? ANONYMOUS_SLICE, { startTime, attributes }, apiTrace.setSpan(ROOT_CONTEXT, parent))
    }
    if (detail) markDetail(span)
    // A detail slice does not become the link of the next exported one.
    stack.push({ name, level, topLevel: parent === undefined && !detail, span })
  }

  private innermostSpan(rc: RequestContext): Span | undefined {
    const stack = rc.slices
    for (let i = stack.length - 1; i >= 0; i--) {
      const span = stack[i]!.span
      if (span !== undefined) return span
    }
    return undefined
  }

  private eventTarget(rc: RequestContext): Span | undefined {
    return this.innermostSpan(rc) ?? rc.loop ?? rc.thread ?? rc.root
  }

  /** The slice the next process's first slice should link to: the open top-level one, else the last. */
  private currentFlowSpan(rc: RequestContext): SpanContext | undefined {
    for (const s of rc.slices) if (s.span !== undefined) return s.span.spanContext()
    return rc.prev
  }

  private adoptPrev(rc: RequestContext, carrier: CarrierInput): void {
    const c = carrier == null ? null : readCarrier(carrier)
    if (c?.prev === undefined) return
    const prev = parseTraceparent(c.prev)
    if (prev !== null && prev.traceId === rc.rootSc.traceId) rc.prev = prev
  }

  private endLoop(rc: RequestContext): void {
    const loop = rc.loop!
    loop.setAttribute(SPANSERVE_DECODE_STEPS, rc.loopSteps)
    loop.end(nsToHrTime(rc.loopEndNs))
    rc.loop = undefined
  }

  private endThread(rc: RequestContext, endTime: HrTime | undefined, error: Error | string | undefined): void {
    const stack = rc.slices
    while (stack.length > 0) {
      const span = stack.pop()!.span
      if (span === undefined) continue
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR })
      span.end(endTime)
    }
    if (rc.loop !== undefined) this.endLoop(rc)
    const thread = rc.thread
    if (thread === undefined) return
    if (error !== undefined) thread.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) })
    thread.end(endTime)
    threadSpanEnded(thread.spanContext().spanId)
    rc.thread = undefined
  }

  private free(rid: string): void {
    if (this.reqs.delete(rid)) live--
  }

  private updateRankAttrs(): void {
    const a: Attributes = { [SPANSERVE_THREAD_LABEL]: this.label }
    if (this.tpRank !== undefined) a[SPANSERVE_TP_RANK] = this.tpRank
    if (this.dpRank !== undefined) a[SPANSERVE_DP_RANK] = this.dpRank
    this.rankAttrs = a
  }
}

/** A carrier's links as OTel span links, each with the attributes that say why (spanserve.link.*). */
function spanLinks(links: readonly CarrierLink[]): Link[] {
  const out: Link[] = []
  for (const l of links) {
    const context = parseTraceparent(l.traceparent)
    if (context === null) continue
    const attributes: Attributes = { [SPANSERVE_LINK_REASON]: l.reason }
    if (l.process !== undefined) attributes[SPANSERVE_LINK_PROCESS] = l.process
    if (l.pid !== undefined) attributes[SPANSERVE_LINK_PROCESS_PID] = l.pid
    out.push({ context, attributes })
  }
  return out
}
