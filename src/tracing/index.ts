/** The tracing module's public surface. */
export * from './attributes.ts'
export { EVENT, EVENTS, REQUEST_ROOT_SPAN, SLICE, SLICES, type EventSpec, type SliceDoc } from './names.ts'
export type { OtlpProtocol, ProcessIdentity, TraceExporterKind, TracingOptions } from './options.ts'
export type { SliceRef, SliceSpec } from './types.ts'
export {
  formatTraceparent,
  makeCarrier,
  parseTraceparent,
  readCarrier,
  validTracestate,
  type TraceCarrier,
} from './propagation.ts'
export { droppedSpans, flushTracing, initTracing, isTracingEnabled, shutdownTracing, type TracingHooks } from './setup.ts'
export type { WarnLogger } from './export-accounting.ts'
export { nowNs } from './time.ts'
export * from './trace.ts'
