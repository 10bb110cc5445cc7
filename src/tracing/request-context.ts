/** What one process holds for one traced request: its spans, open slices and flow link. */
import type { Context, Span, SpanContext } from '@opentelemetry/api'
import type { CarrierLink, TraceLevel } from './types.ts'

export interface OpenSlice {
  name: string | null
  level: TraceLevel
  /** A child of the thread span: links to the previous slice and becomes the next one's link. */
  topLevel: boolean
  /** undefined when the slice is below the current level: kept only for stack matching. */
  span: Span | undefined
}

/** All this process knows about one traced request. */
export class RequestContext {
  root: Span | undefined
  thread: Span | undefined
  readonly slices: OpenSlice[] = []
  prev: SpanContext | undefined
  loop: Span | undefined
  loopEndNs = 0
  loopSteps = 0
  /** Links the carrier brought (a resumed attempt's): on this thread span, and passed on downstream. */
  links: CarrierLink[] | undefined

  constructor(
    /** The request root's span context: parent of thread spans in every process. */
    readonly rootSc: SpanContext,
    readonly tracestate: string | undefined,
    /** Context holding the thread span: parent of this thread's top-level slices. */
    public threadCtx: Context,
  ) {}
}
