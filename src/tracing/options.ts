/**
 * Tracing options, as resolved by src/config from flags, then OTEL_* variables, then
 * FastDeploy-style aliases, then defaults. Every process receives the same object.
 */
import type { FlightRecorderOptions, Role, TailKeepOptions, TraceLevel } from './types.ts'

export type TraceExporterKind = 'otlp' | 'console' | 'file'
export type OtlpProtocol = 'grpc' | 'http/protobuf'

export interface TracingOptions {
  /** --trace-enable / TRACES_ENABLE. Off means off: no SDK is started. */
  enabled: boolean
  /** OTEL_SERVICE_NAME / FD_SERVICE_NAME; default 'spanserve'. */
  serviceName: string
  /** FD_HOST_NAME; default os.hostname(). */
  hostName: string
  /** TRACES_EXPORTER; default 'otlp'. */
  exporter: TraceExporterKind
  /** --otlp-traces-endpoint, normalised: 'http://host:port' (grpc) or 'http://host:port/v1/traces' (http). */
  otlpEndpoint: string
  /** --otlp-traces-protocol; default 'grpc'. */
  otlpProtocol: OtlpProtocol
  /** OTEL_EXPORTER_OTLP_(TRACES_)HEADERS parsed: never logged. */
  otlpHeaders: Record<string, string>
  /** OTEL_EXPORTER_OTLP_TRACES_INSECURE; default true for http:// endpoints. */
  otlpInsecure: boolean
  /** --trace-file: where the file exporter writes OTLP JSON lines. */
  filePath: string
  /** OTEL_RESOURCE_ATTRIBUTES parsed. */
  resourceAttributes: Record<string, string>
  /** --trace-level 1|2|3; default 2. */
  level: TraceLevel
  /** --trace-sample-rate 0..1 (OTEL_TRACES_SAMPLER_ARG); default 1. */
  sampleRate: number
  /** false with --trace-ignore-parent-sampling: a caller's sampled flag is then not honoured. */
  parentBased: boolean
  /** --trace-record-content: prompts and completions go into spans only when true. */
  recordContent: boolean
  /** OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT; default 4096. */
  attributeValueLengthLimit: number
  /** --trace-exclude-urls: HTTP paths not traced; default ['/health','/metrics','/v1/models']. */
  excludeUrls: string[]
  /** Bounded export queue (BatchSpanProcessor maxQueueSize); overflow is dropped and counted. */
  maxQueueSize: number
  /** Export timeout in ms, so a slow collector never holds serving. */
  exportTimeoutMs: number
  /** --trace-keep and its thresholds; null (the default): no tail sampling, spans export as they end. */
  keep?: TailKeepOptions | null
  /** --trace-flight-recorder and its cap; null (the default): no recorder, levels above --trace-level are not recorded. */
  flightRecorder?: FlightRecorderOptions | null
}

/** Who is tracing: every process calls processInit with its own identity. */
export interface ProcessIdentity {
  role: Role
  dpRank?: number
  tpRank?: number
}
