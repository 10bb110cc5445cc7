import { hostname } from 'node:os'
import type { Config } from './schema.ts'
import type { TracingOptions } from '../tracing/options.ts'
import { KEEP_POLICIES, type KeepPolicy, type TailKeepOptions, type TraceLevel } from '../tracing/types.ts'
import { ConfigError } from './config-error.ts'
import { SPANSERVE_DISAGGREGATION_MODE } from '../tracing/attributes.ts'

/** How long a process holds a trace's spans for a verdict that does not come (a server that died, a lost message). */
const VERDICT_TIMEOUT_MS = 60_000

/** A --trace-keep that names an unknown policy stops the start (parse.ts). */
export function checkTraceKeep(policies: readonly string[]): void {
  for (const p of policies) {
    if (!(KEEP_POLICIES as readonly string[]).includes(p)) throw new ConfigError(`--trace-keep: expected a list of ${KEEP_POLICIES.join(', ')}, got "${p}"`)
  }
}

/** --trace-keep and its thresholds; null when the list is empty. */
function keepOptions(config: Config): TailKeepOptions | null {
  if (config.traceKeep.length === 0) return null
  checkTraceKeep(config.traceKeep)
  return {
    policies: config.traceKeep as KeepPolicy[],
    ttftMs: config.traceKeepTtftMs,
    itlP99Ms: config.traceKeepItlP99Ms,
    e2eMs: config.traceKeepE2eMs,
    bufferSpans: config.traceKeepBufferSpans,
    verdictTimeoutMs: VERDICT_TIMEOUT_MS,
  }
}

/**
 * The collector address as the exporters want it. Accepts HOST:PORT, grpc://HOST:PORT and
 * http(s)://HOST:PORT[/path]; for http/protobuf the path defaults to /v1/traces.
 */
function normaliseOtlpEndpoint(endpoint: string, protocol: TracingOptions['otlpProtocol']): string {
  let url = endpoint.trim()
  if (url.startsWith('grpc://')) url = 'http://' + url.slice('grpc://'.length)
  if (!/^https?:\/\//.test(url)) url = 'http://' + url
  const parsed = new URL(url)
  if (protocol === 'http/protobuf') {
    if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = '/v1/traces'
    return parsed.toString()
  }
  return `${parsed.protocol}//${parsed.host}`
}

export function tracingOptions(config: Config): TracingOptions {
  let endpoint = config.otlpTracesEndpoint
  // The usual HTTP port when the user switched protocol but kept the default address.
  if (config.otlpTracesProtocol === 'http/protobuf' && endpoint === 'localhost:4317') endpoint = 'localhost:4318'
  const otlpEndpoint = normaliseOtlpEndpoint(endpoint, config.otlpTracesProtocol)
  return {
    enabled: config.traceEnable,
    serviceName: config.serviceName,
    hostName: config.hostName || hostname(),
    exporter: config.traceExporter,
    otlpEndpoint,
    otlpProtocol: config.otlpTracesProtocol,
    otlpHeaders: config.otlpTracesHeaders,
    otlpInsecure: config.otlpTracesInsecure && !otlpEndpoint.startsWith('https://'),
    filePath: config.traceFile,
    // Which side of a prefill/decode pair the processes are on (absent for the router, whose config has no mode).
    resourceAttributes: { ...config.resourceAttributes, ...(modeOf(config) ? { [SPANSERVE_DISAGGREGATION_MODE]: modeOf(config)! } : {}) },
    level: config.traceLevel as TraceLevel,
    sampleRate: config.traceSampleRate,
    parentBased: !config.traceIgnoreParentSampling,
    recordContent: config.traceRecordContent,
    attributeValueLengthLimit: config.attributeValueLengthLimit,
    excludeUrls: config.traceExcludeUrls,
    maxQueueSize: config.traceQueueSize,
    exportTimeoutMs: config.traceExportTimeout,
    keep: keepOptions(config),
    flightRecorder: config.traceFlightRecorder > 0 ? { windowSeconds: config.traceFlightRecorder, maxSpans: config.traceFlightRecorderSpans } : null,
  }
}

function modeOf(config: Config): string | undefined {
  const mode = (config as Partial<Config>).disaggregationMode
  return mode === undefined || mode === 'null' ? undefined : mode
}
