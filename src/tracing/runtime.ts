/**
 * The per-process tracing state shared by setup (which fills it) and the API (which reads it).
 * `enabled` is the one boolean every API call checks first: off means off.
 */
import type { Tracer } from '@opentelemetry/api'
import type { ProcessIdentity } from './options.ts'
import type { SpanserveSampler } from './sampler.ts'
import type { SliceSink, TraceLevel, TraceOffload } from './types.ts'

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
}

/** Called by shutdown so that every live request context is released with the SDK. */
export const resetHooks: Array<() => void> = []
