/**
 * The per-process tracing state shared by setup (which fills it) and the API (which reads it).
 * `enabled` is the one boolean every API call checks first: off means off.
 */
import type { Tracer } from '@opentelemetry/api'
import type { ProcessIdentity } from './options.ts'
import type { SpanserveSampler } from './sampler.ts'
import type { SliceSink, TraceLevel, TraceOffload } from './types.ts'
import type { FlightRecorder } from './flight-recorder.ts'
import type { TailBuffer } from './tail-buffer.ts'
import type { TailDecider } from './tail-decider.ts'

export interface TracingRuntime {
  enabled: boolean
  tracer: Tracer | undefined
  sampler: SpanserveSampler | undefined
  /** Where batch slices go as finished spans (finished-slice.ts). */
  slices: SliceSink | undefined
  /** The level recorded: --trace-level, or 3 with the flight recorder. */
  level: TraceLevel
  /** The level exported (--trace-level); above it, spans go to the flight recorder. */
  exportLevel: TraceLevel
  recordContent: boolean
  valueLengthLimit: number
  identity: ProcessIdentity
  hostName: string
  /** Set when a worker thread does this process's tracing (offload.ts): the API records calls for it. */
  offload: TraceOffload | undefined
  /** With --trace-keep: where this process holds spans until their verdict (tail-buffer.ts). */
  tail: TailBuffer | undefined
  /** With --trace-keep, in the server: who gives the verdicts (tail-decider.ts). */
  decider: TailDecider | undefined
  /** With --trace-flight-recorder: the held detail of recent traces (flight-recorder.ts). */
  recorder: FlightRecorder | undefined
}

export const runtime: TracingRuntime = {
  enabled: false,
  tracer: undefined,
  sampler: undefined,
  slices: undefined,
  level: 2,
  exportLevel: 2,
  recordContent: false,
  valueLengthLimit: 4096,
  identity: { role: 'server' },
  hostName: '',
  offload: undefined,
  tail: undefined,
  decider: undefined,
  recorder: undefined,
}

/** Called by shutdown so that every live request context is released with the SDK. */
export const resetHooks: Array<() => void> = []
