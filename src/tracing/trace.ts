/**
 * The SGLang-style tracing API, as module functions over this process's default thread.
 * With tracing off, every function returns after one boolean check.
 *
 *   server:    reqStart(rid, null, { root: true })  → carrier = getPropagateContext(rid)
 *   elsewhere: reqStart(rid, msg.trace)             → slices … → getPropagateContext(rid) on send
 *   all:       reqFinish(rid) (or sliceEnd(..., { threadFinish: true }))
 */
import type { Attributes } from '@opentelemetry/api'
import { promptCompletionAttributes } from './attributes.ts'
import { resetHooks, runtime } from './runtime.ts'
import { releaseAll, ThreadTracer } from './thread-tracer.ts'
import type { CarrierInput, ReqFinishOptions, ReqStartOptions, Role, SliceEndOptions, SliceRef, SliceStartOptions, TraceCalls, TraceCarrier, TraceLevel } from './types.ts'

export { liveRequestCount, ThreadTracer } from './thread-tracer.ts'
export type {
  CarrierInput,
  KeptBy,
  TailKeepOptions,
  ReqFinishOptions,
  ReqStartOptions,
  Role,
  SliceEndOptions,
  SliceRef,
  SliceStartOptions,
  TraceCalls,
  TraceLevel,
} from './types.ts'
export { TRACE_LEVELS } from './types.ts'

const main = new ThreadTracer('Server')

/** Where the API's void calls go: this thread's tracer, or the recorder for a tracing thread (offload.ts). */
const sink = (): TraceCalls => runtime.offload ?? main
resetHooks.push(releaseAll)

const LABELS: Record<Role, string> = {
  server: 'Server',
  tokenizer: 'Tokenizer',
  scheduler: 'Scheduler',
  worker: 'Worker',
  router: 'Router',
}

/** The thread label a role gets unless setThreadInfo says otherwise. */
export function defaultThreadLabel(role: Role): string {
  return LABELS[role]
}

/** SGLang's trace_set_thread_info for this process's default thread. */
export function setThreadInfo(label: string, tpRank?: number, dpRank?: number): void {
  main.setThreadInfo(label, tpRank, dpRank)
}

/** A second thread in the same process (or, in tests, a stand-in for another process). */
export function createThreadTracer(label: string, tpRank?: number, dpRank?: number): ThreadTracer {
  return new ThreadTracer(label, tpRank, dpRank)
}

export function reqStart(rid: string, carrier: CarrierInput, opts?: ReqStartOptions): void {
  if (runtime.enabled) sink().reqStart(rid, carrier, opts)
}

export function reqFinish(rid: string, opts?: ReqFinishOptions): void {
  if (runtime.enabled) sink().reqFinish(rid, opts)
}

export function reqAbort(rid: string, reason?: string, ts?: number): void {
  if (runtime.enabled) sink().reqAbort(rid, reason, ts)
}

export function sliceStart(rid: string, slice: SliceRef | null, opts?: SliceStartOptions): void {
  if (runtime.enabled) sink().sliceStart(rid, slice, opts)
}

export function sliceEnd(rid: string, slice?: SliceRef | null, opts?: SliceEndOptions): void {
  if (runtime.enabled) sink().sliceEnd(rid, slice, opts)
}

export function event(rid: string, name: string, attributes?: Attributes, ts?: number): void {
  if (runtime.enabled) sink().event(rid, name, attributes, ts)
}

export function sliceAttrs(rid: string, attributes: Attributes): void {
  if (runtime.enabled) sink().sliceAttrs(rid, attributes)
}

export function reqEvent(rid: string, name: string, attributes?: Attributes, ts?: number): void {
  if (runtime.enabled) sink().reqEvent(rid, name, attributes, ts)
}

export function reqAttrs(rid: string, attributes: Attributes): void {
  if (runtime.enabled) sink().reqAttrs(rid, attributes)
}

export function getPropagateContext(rid: string): TraceCarrier | null {
  // Offloaded: the context lives in the tracing thread (see offload.ts).
  return runtime.enabled && !runtime.offload ? main.getPropagateContext(rid) : null
}

export function setPropagateContext(rid: string, carrier: CarrierInput): void {
  if (runtime.enabled) sink().setPropagateContext(rid, carrier)
}

export function batchSlice(rids: readonly string[], slice: SliceRef, startNs: number, endNs: number, attributes?: Attributes, level?: TraceLevel): void {
  if (runtime.enabled) sink().batchSlice(rids, slice, startNs, endNs, attributes, level)
}

/** True when rid is traced in this process's default thread (e.g. to skip building attributes). */
export function isTraced(rid: string): boolean {
  return runtime.enabled && !runtime.offload && main.isTraced(rid)
}

export function setLevel(level: TraceLevel): void {
  if (level !== 1 && level !== 2 && level !== 3) return
  runtime.exportLevel = level
  // With the flight recorder, every level is recorded; the level only says what is exported.
  if (runtime.recorder === undefined) runtime.level = level
  runtime.offload?.changeSetting({ level })
}

export function getLevel(): TraceLevel {
  return runtime.exportLevel
}

/** The level recorded in this process: the exported one, or 3 with the flight recorder (flight-recorder.ts). */
export function getRecordedLevel(): TraceLevel {
  return runtime.level
}

/** Changes the ratio for traces that start in this process from now on. */
export function setSampleRate(rate: number): void {
  runtime.sampler?.setRatio(rate)
  runtime.offload?.changeSetting({ sampleRate: rate })
}

export function getSampleRate(): number {
  return runtime.sampler?.getRatio() ?? 0
}

/**
 * Prompt/completion text and the names of the tools offered, only when --trace-record-content is on
 * (otherwise undefined, and nothing about the content leaves the process), cut to the length limit.
 */
export function contentAttributes(prompt?: string, completion?: string, toolNames?: readonly string[]): Attributes | undefined {
  if (!runtime.enabled || !runtime.recordContent) return undefined
  return promptCompletionAttributes(prompt, completion, runtime.valueLengthLimit, toolNames)
}
