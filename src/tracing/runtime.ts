/**
 * The per-process tracing state shared by setup (which fills it) and the API (which reads it).
 * `enabled` is the one boolean every API call checks first: off means off.
 */
import type { Tracer } from '@opentelemetry/api'
import type { ProcessIdentity } from './options.ts'
import type { SpanserveSampler } from './sampler.ts'
import type { SliceSink, TraceLevel, TraceOffload } from './types.ts'
import type { TailBuffer } from './tail-buffer.ts'
import type { TailDecider } from './tail-decider.ts'

export interface TracingRuntime {
  enabled: boolean
  tracer: Tracer | undefined
  sampler: SpanserveSampler | undefined
  /** Where batch slices go as finished spans (finished-slice.ts). */
  slices: SliceSink | undefined
  level: TraceLevel
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
}

export const runtime: TracingRuntime = {
  enabled: false,
  tracer: undefined,
  sampler: undefined,
  slices: undefined,
  level: 2,
  recordContent: false,
  valueLengthLimit: 4096,
  identity: { role: 'server' },
  hostName: '',
  offload: undefined,
  tail: undefined,
  decider: undefined,
}

/** Called by shutdown so that every live request context is released with the SDK. */
export const resetHooks: Array<() => void> = []
