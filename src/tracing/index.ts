/** The tracing module's public surface. */
export * from './attributes.ts'
export { EVENT, SLICE, SLICES } from './names.ts'
export {
  formatTraceparent,
  makeCarrier,
  parseTraceparent,
  readCarrier,
  type CarrierLink,
  type TraceCarrier,
} from './propagation.ts'
export { droppedSpans, dumpFlightRecorder, flightRecorderStats, flushTracing, initTracing, isTracingEnabled, shutdownTracing } from './setup.ts'
export type { WarnLogger } from './types.ts'
export { reportSliceMarks } from './slice-marks.ts'
export { applyTraceVerdicts, isHeadSampled, setTraceVerdictSink, tailKeepOptions, tailRequestEnded, tailRequestStarted } from './tail.ts'
export { keepReason } from './tail-decider.ts'
export { nowNs } from './time.ts'
export { newSpanId } from './preset-ids.ts'
export * from './trace.ts'
