/**
 * Tracing run by a worker thread. The calling thread only records each API call, with its
 * timestamp, and hands the calls over once per turn of its event loop; the thread
 * (offload-thread.ts) runs this same tracing module for real: SDK spans, batching, OTLP export.
 *
 * For the worker process: its main thread is blocked in ONNX Runtime for every step, so the SDK work
 * of a span per request per step (objects, attributes, encoding, gRPC) lengthened every step by
 * tens of µs per request. Calls that return a value (getPropagateContext, isTraced) are not
 * available this way: the worker passes no context on.
 */
import { Worker } from 'node:worker_threads'
import type { Attributes } from '@opentelemetry/api'
import type { ProcessIdentity, TracingOptions } from './options.ts'
import type { WarnLogger } from './types.ts'
import type { Flushed, RecorderStats } from './flight-recorder.ts'
import { SLICE, sliceLevel, sliceName } from './names.ts'
import { runtime } from './runtime.ts'
import { deliverSliceMarks } from './slice-marks.ts'
import { nowNs } from './time.ts'
import type { CarrierInput, ReqFinishOptions, ReqStartOptions, SliceEndOptions, SliceRef, SliceStartOptions, TraceCalls, TraceLevel, TraceOffload, TraceSettingChange } from './types.ts'

/** One recorded call of TraceCalls: the name of the trace.ts function that replays it, then its arguments. */
export type OffloadCall = { [K in keyof TraceCalls]: [K, ...Parameters<TraceCalls[K]>] }[keyof TraceCalls]

/** main → thread. A setting change is posted after the calls recorded before it, so it applies in order. */
export type ToThread =
  | { type: 'calls'; calls: OffloadCall[] }
  | { type: 'setting'; change: TraceSettingChange }
  | { type: 'flush'; id: number }
  | { type: 'shutdown'; id: number }
  /** Collect slice marks (slice-marks.ts) and post them back, or stop. */
  | { type: 'marks'; on: boolean }
  /** Tail sampling's verdicts (tail-buffer.ts), after the calls recorded before them. */
  | { type: 'verdict'; keep: readonly string[]; drop: readonly string[] }
  /** The flight recorder's window to the export queue (flight-recorder.ts); answered by `done` with what it sent. */
  | { type: 'dump'; id: number }

/** thread → main */
export type FromThread =
  | { type: 'ready' }
  /** `batches`: call batches this report answers (1 after calls, 0 after a flush). */
  | { type: 'report'; dropped: number; live: number; batches: number; recorder: RecorderStats | null }
  | { type: 'done'; id: number; sent?: Flushed }
  | { type: 'warn'; obj: object; msg: string }
  /** Slice marks the thread's exports produced, for this process's sink. */
  | { type: 'marks'; rids: string[]; slices: string[] }

export interface OffloadStart {
  opts: TracingOptions
  who: ProcessIdentity
}

/** How long shutdown waits for the thread to export what it holds. */
const SHUTDOWN_WAIT_MS = 5000

/**
 * Batches of calls the thread may be behind by (about one per step) before slices are dropped: a
 * thread starved of CPU must cost spans, not a queue that grows without bound. Request starts and
 * finishes are never dropped, so no context is left open.
 */
const MAX_BEHIND = 64

/**
 * How long a decode step that exports nothing of its own may wait to be handed over: below level 3 each
 * decode_forward only counts into its request's decode_loop (or, with the flight recorder, is held
 * there), so the steps of this long leave together, in one message, unless another call takes them
 * sooner. At level 2 a post per step (a structured clone, waking the thread, its report back) cost the
 * thread that runs the model 12 to 17 µs a step, and the tracing thread 17 to 24 (16 requests a step).
 */
const LAZY_MS = 25

export class TracingOffload implements TraceOffload {
  private calls: OffloadCall[] = []
  private scheduled = false
  private urgent = false
  private lazy: NodeJS.Timeout | undefined
  private nextId = 0
  private readonly waiting = new Map<number, (sent?: Flushed) => void>()
  private stopping = false
  /** The thread's last figures: spans dropped there, request contexts open. */
  private threadDropped = 0
  live = 0
  recorder: RecorderStats | null = null
  /** Slices not handed over because the thread was too far behind. */
  private shed = 0
  /** Batches posted and not yet answered by a report. */
  private behind = 0

  private constructor(
    private readonly worker: Worker,
    log: WarnLogger,
  ) {
    worker.on('message', (m: FromThread) => {
      if (m.type === 'report') {
        this.threadDropped = m.dropped
        this.live = m.live
        this.recorder = m.recorder
        this.behind -= m.batches
      } else if (m.type === 'done') {
        this.waiting.get(m.id)?.(m.sent)
        this.waiting.delete(m.id)
      } else if (m.type === 'warn') {
        log.warn(m.obj, m.msg)
      } else if (m.type === 'marks') {
        deliverSliceMarks(m.rids, m.slices)
      }
    })
    // It exits with the process; it must not keep the process alive on its own.
    worker.unref()
  }

  /** Starts the thread and waits until its SDK is up. */
  static async start(opts: TracingOptions, who: ProcessIdentity, log: WarnLogger, onFailure: (err: Error) => void): Promise<TracingOffload> {
    const worker = new Worker(new URL('./offload-thread-entry.mjs', import.meta.url), { workerData: { opts, who } satisfies OffloadStart })
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromThread) => {
        if (m.type !== 'ready') return
        worker.off('message', onMessage)
        worker.off('error', reject)
        resolve()
      }
      worker.on('message', onMessage)
      worker.once('error', reject)
    })
    const offload = new TracingOffload(worker, log)
    // A thread that fails later costs the process its traces, never its serving.
    worker.on('error', onFailure)
    worker.on('exit', (code) => {
      if (!offload.stopping) onFailure(new Error(`the tracing thread exited (code ${code})`))
    })
    return offload
  }

  /** Spans lost: dropped by the thread's export, or shed here while it was too far behind. */
  get dropped(): number {
    return this.threadDropped + this.shed
  }

  // The calls of the API, stamped now where the caller left the time out: the thread runs them later.
  // A declared slice is recorded as its name and level: the thread needs no more of it.
  reqStart(rid: string, carrier: CarrierInput, opts?: ReqStartOptions): void {
    this.call(['reqStart', rid, carrier, { ...opts, ts: opts?.ts ?? nowNs() }])
  }

  reqFinish(rid: string, opts?: ReqFinishOptions): void {
    this.call(['reqFinish', rid, { ...opts, ts: opts?.ts ?? nowNs() }])
  }

  reqAbort(rid: string, reason?: string, ts?: number): void {
    this.call(['reqAbort', rid, reason, ts ?? nowNs()])
  }

  sliceStart(rid: string, slice: SliceRef | null, opts?: SliceStartOptions): void {
    this.call(['sliceStart', rid, sliceName(slice), { ...opts, level: sliceLevel(slice, opts?.level, 1), ts: opts?.ts ?? nowNs() }])
  }

  sliceEnd(rid: string, slice?: SliceRef | null, opts?: SliceEndOptions): void {
    this.call(['sliceEnd', rid, sliceName(slice), { ...opts, ts: opts?.ts ?? nowNs() }])
  }

  event(rid: string, name: string, attributes?: Attributes, ts?: number): void {
    this.call(['event', rid, name, attributes, ts ?? nowNs()])
  }

  reqEvent(rid: string, name: string, attributes?: Attributes, ts?: number): void {
    this.call(['reqEvent', rid, name, attributes, ts ?? nowNs()])
  }

  sliceAttrs(rid: string, attributes: Attributes): void {
    this.call(['sliceAttrs', rid, attributes])
  }

  reqAttrs(rid: string, attributes: Attributes): void {
    this.call(['reqAttrs', rid, attributes])
  }

  setPropagateContext(rid: string, carrier: CarrierInput): void {
    this.call(['setPropagateContext', rid, carrier])
  }

  batchSlice(rids: readonly string[], slice: SliceRef, startNs: number, endNs: number, attributes?: Attributes, level?: TraceLevel): void {
    this.call(['batchSlice', rids, sliceName(slice), startNs, endNs, attributes, sliceLevel(slice, level, 3)])
  }

  /** The thread's level or sample rate changes, after the calls recorded so far. */
  changeSetting(change: TraceSettingChange): void {
    this.send()
    this.post({ type: 'setting', change })
  }

  /** Tail sampling's verdicts reach the thread after the calls recorded so far, so they cover their spans. */
  verdicts(keep: readonly string[], drop: readonly string[]): void {
    this.send()
    this.post({ type: 'verdict', keep, drop })
  }

  /** The thread reports slice marks (or stops), after the calls recorded so far. */
  reportMarks(on: boolean): void {
    this.send()
    this.post({ type: 'marks', on })
  }

  /** Record one call; the calls of this turn of the event loop leave together. */
  private call(c: OffloadCall): void {
    if (c[0] === 'batchSlice' && this.behind >= MAX_BEHIND) {
      this.shed += c[1].length
      return
    }
    this.calls.push(c)
    // A decode step below the level: nothing of it is exported now, so it waits for the next call
    // that is, or LAZY_MS. (This thread's level is the exported one; the flight recorder's detail is held.)
    if (c[0] === 'batchSlice' && c[2] === SLICE.decodeForward && (c[6] ?? 3) > runtime.level) {
      if (!this.scheduled && !this.urgent && this.lazy === undefined) {
        this.lazy = setTimeout(this.sendLazy, LAZY_MS)
        this.lazy.unref()
      }
      return
    }
    // A finished slice leaves at the end of this synchronous run, not of the turn: steps can follow one
    // another before the loop turns, and until the thread has it, a slice dies with the process (the
    // thread journals it: span-journal.ts). One post per step still, since a step records its slices together.
    if (c[0] === 'batchSlice' && !this.urgent) {
      this.urgent = true
      queueMicrotask(this.sendUrgent)
    }
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.sendTurn)
  }

  private readonly sendUrgent = (): void => {
    this.urgent = false
    this.send()
  }

  private readonly sendLazy = (): void => {
    this.lazy = undefined
    this.send()
  }

  private readonly sendTurn = (): void => {
    this.scheduled = false
    this.send()
  }

  private send(): void {
    if (this.lazy !== undefined) {
      clearTimeout(this.lazy)
      this.lazy = undefined
    }
    if (this.calls.length === 0) return
    const calls = this.calls
    this.calls = []
    this.behind++
    this.post({ type: 'calls', calls })
  }

  private post(m: ToThread): void {
    this.worker.postMessage(m)
  }

  private request(type: 'flush' | 'shutdown' | 'dump', waitMs: number): Promise<Flushed | undefined> {
    this.send()
    const id = ++this.nextId
    return new Promise<Flushed | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        resolve(undefined)
      }, waitMs)
      this.waiting.set(id, (sent) => {
        clearTimeout(timer)
        resolve(sent)
      })
      this.post({ type, id })
    })
  }

  /** Everything recorded so far is exported (or the export timeout passed). */
  async flush(): Promise<void> {
    await this.request('flush', SHUTDOWN_WAIT_MS)
  }

  /** The thread's recorded window goes to its export queue, after the calls recorded so far. */
  async dump(): Promise<Flushed> {
    return (await this.request('dump', SHUTDOWN_WAIT_MS)) ?? { traces: 0, spans: 0 }
  }

  /** Exports what is held, stops the thread's SDK, and ends the thread. */
  async shutdown(): Promise<void> {
    this.stopping = true
    await this.request('shutdown', SHUTDOWN_WAIT_MS)
    await this.worker.terminate()
  }
}
