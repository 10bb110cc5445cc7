/**
 * The tracing module's types, in a leaf that imports nothing from tracing/: every other tracing
 * file (and the message contract, the config, the routes) takes them from here, so no file needs
 * another for its types alone and no import circle can form through them.
 */
import type { Attributes } from '@opentelemetry/api'
import type { InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base'

/** 1 = thread spans and the main stages, 2 (default) = + dispatch and chunking, 3 = + every decode step. */
export type TraceLevel = 1 | 2 | 3

/** The logger shape tracing warns through (pino's warn fits). */
export interface WarnLogger {
  warn(obj: object, msg: string): void
}
export const TRACE_LEVELS = [1, 2, 3] as const satisfies readonly TraceLevel[]

/** A declared slice (names.ts SLICES): its name, and the level it is recorded at. */
export interface SliceSpec {
  readonly name: string
  /** Recorded when this is at most the current trace level. */
  readonly level: TraceLevel
}

/**
 * A slice as the calls take it: declared, so that its level comes with it, or a bare name (then
 * `opts.level`, else 1 for sliceStart and 3 for batchSlice). null in sliceStart: anonymous.
 */
export type SliceRef = SliceSpec | string

/** A spanserve process's role: the process folders (and the router in front of instances), and the label of its thread spans. */
export type Role = 'server' | 'tokenizer' | 'scheduler' | 'worker' | 'router'

/** What crosses a process boundary with a request, as JSON (propagation.ts reads and writes it). */
export interface TraceCarrier {
  /** W3C traceparent of the request root span: the parent of every thread span downstream. */
  traceparent: string
  /** W3C tracestate of the request root, passed through untouched. */
  tracestate?: string
  /** W3C traceparent of the previous slice (the open or last-ended one in the sender), for links. */
  prev?: string
  /**
   * Spans that every thread span of this request downstream links to, and why: a resumed attempt's
   * carrier names the dead process's last exported slice (src/server/engine-client/resume.ts). Absent on almost
   * every request; passed on by each process that traces the request.
   */
  links?: CarrierLink[]
}

/** A span a thread span links to (an OTel span link), with what the link's attributes say (SPANSERVE_LINK_*). */
export interface CarrierLink {
  /** W3C traceparent of the linked span. */
  traceparent: string
  /** Why it links, e.g. resumed_from (SPANSERVE_LINK_REASON). */
  reason: string
  /** The process that recorded the linked span, its key, e.g. worker-0-0 (SPANSERVE_LINK_PROCESS). */
  process?: string
  /** That process's pid (SPANSERVE_LINK_PROCESS_PID). */
  pid?: number
}

/** A carrier as the calls accept it: a decoded message field, its JSON, or none. */
export type CarrierInput = TraceCarrier | string | null | undefined

export interface ReqStartOptions {
  /** Server process only: create the request root span (under the carrier, else the active context). */
  root?: boolean
  /** On the root span (root) or the thread span (elsewhere). */
  attributes?: Attributes
  /** Epoch ns; default now. */
  ts?: number
}

export interface ReqFinishOptions {
  /** Marks root, thread span and open slices ERROR, with an exception event. */
  error?: Error | string
  /** On the root span where there is one, else the thread span. */
  attributes?: Attributes
  ts?: number
}

export interface SliceStartOptions {
  /** Recorded only when level <= the current trace level; default: the declared slice's own, else 1. */
  level?: TraceLevel
  /** The slice's span id, chosen by the caller to name it to another process (preset-ids.ts); default: random. */
  spanId?: string
  attributes?: Attributes
  ts?: number
}

export interface SliceEndOptions {
  attributes?: Attributes
  /** Start the next anonymous slice at this same instant (SGLang's auto_next_anon). */
  autoNextAnon?: boolean
  /** This was the thread's last slice: end the thread span too (SGLang's thread_finish_flag). */
  threadFinish?: boolean
  error?: Error | string
  ts?: number
}

/**
 * The void calls of the tracing API: what a thread's tracer (thread-tracer.ts) does, and what the
 * offload recorder (offload.ts) records for a tracing thread to replay. Only these cross to that
 * thread as calls, so each must return nothing.
 */
export interface TraceCalls {
  reqStart(rid: string, carrier: CarrierInput, opts?: ReqStartOptions): void
  reqFinish(rid: string, opts?: ReqFinishOptions): void
  reqAbort(rid: string, reason?: string, ts?: number): void
  sliceStart(rid: string, slice: SliceRef | null, opts?: SliceStartOptions): void
  sliceEnd(rid: string, slice?: SliceRef | null, opts?: SliceEndOptions): void
  event(rid: string, name: string, attributes?: Attributes, ts?: number): void
  /** An event on the request root span (server), else on this thread's span. */
  reqEvent(rid: string, name: string, attributes?: Attributes, ts?: number): void
  sliceAttrs(rid: string, attributes: Attributes): void
  reqAttrs(rid: string, attributes: Attributes): void
  setPropagateContext(rid: string, carrier: CarrierInput): void
  batchSlice(rids: readonly string[], slice: SliceRef, startNs: number, endNs: number, attributes?: Attributes, level?: TraceLevel): void
}

/** The process-wide settings a running process may change (POST /v1/trace/setting). */
export interface TraceSettingChange {
  level?: TraceLevel
  sampleRate?: number
}

/** What --trace-keep keeps whole, whatever the head sampling said. */
export type KeepPolicy = 'failed' | 'resumed' | 'slow'
export const KEEP_POLICIES = ['failed', 'resumed', 'slow'] as const satisfies readonly KeepPolicy[]

/**
 * Why a trace was kept (spanserve.trace.kept_by): a policy (slow split by which threshold it
 * passed), or `sampled` by the head rate.
 */
export type KeptBy = 'failed' | 'resumed' | 'slow_ttft' | 'slow_itl' | 'slow_e2e' | 'sampled'

/**
 * Tail sampling (tail-buffer.ts, tail-decider.ts): each process holds a trace's finished spans until
 * the server's verdict at the request's end. Absent (null) with --trace-keep empty: today's head sampling.
 */
export interface TailKeepOptions {
  /** --trace-keep. */
  policies: readonly KeepPolicy[]
  /** --trace-keep-ttft-ms: `slow` keeps a request whose first token took longer; 0 = not this measure. */
  ttftMs: number
  /** --trace-keep-itl-p99-ms: … whose 99th-percentile gap between output tokens was longer; 0 = not this measure. */
  itlP99Ms: number
  /** --trace-keep-e2e-ms: … that took longer from arrival to its last output; 0 = not this measure. */
  e2eMs: number
  /** --trace-keep-buffer-spans: spans each process holds awaiting verdicts; past it the oldest trace's are dropped and counted. */
  bufferSpans: number
  /** How long a held trace waits for its verdict before it is dropped (and counted). */
  verdictTimeoutMs: number
}

/** The flight recorder (flight-recorder.ts): absent (null) with --trace-flight-recorder 0, the default. */
export interface FlightRecorderOptions {
  /** --trace-flight-recorder: a trace's detail is held this many seconds after its last span. */
  windowSeconds: number
  /** --trace-flight-recorder-spans: spans each process holds at most; past it the oldest trace's are dropped and counted. */
  maxSpans: number
}

/** A tracing thread that runs this process's tracing (offload.ts), as the API sees it. */
export interface TraceOffload extends TraceCalls {
  /** Request contexts open in the thread, as it last reported. */
  readonly live: number
  /** Spans lost: dropped by the thread's export, or shed while it was too far behind. */
  readonly dropped: number
  /** Changes the thread's settings, in order with the calls recorded before. */
  changeSetting(change: TraceSettingChange): void
  /** Tail sampling's verdicts for the thread's held traces, after the calls recorded so far. */
  verdicts(keep: readonly string[], drop: readonly string[]): void
  /** The flight recorder's size in the thread, as it last reported; null without one. */
  readonly recorder: { spans: number; bytes: number; dropped: number } | null
  /** Sends the thread's recorded window to the export queue (flight-recorder.ts). */
  dump(): Promise<{ traces: number; spans: number }>
  /** Whether the thread reports each request's last exported slice (slice-marks.ts). */
  reportMarks(on: boolean): void
  flush(): Promise<void>
  shutdown(): Promise<void>
}

/** Where batch slices go as finished spans (finished-slice.ts): the provider's own processor, resource and scope. */
export interface SliceSink {
  readonly processor: SpanProcessor
  readonly resource: Resource
  readonly scope: InstrumentationScope
  /** The provider's attribute value length limit, which finished slices apply themselves. */
  readonly valueLengthLimit: number
}
