/** Options of the tracing API's request and slice calls. */
import type { Attributes } from '@opentelemetry/api'
import type { TraceLevel } from './runtime.ts'

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
  /** Recorded only when level <= the current trace level; default 1. */
  level?: TraceLevel
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
