import { hostname } from 'node:os'
import type { Config } from './schema.ts'
import type { TracingOptions } from '../tracing/options.ts'
import type { TraceLevel } from '../tracing/types.ts'

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
    resourceAttributes: config.resourceAttributes,
    level: config.traceLevel as TraceLevel,
    sampleRate: config.traceSampleRate,
    parentBased: !config.traceIgnoreParentSampling,
    recordContent: config.traceRecordContent,
    attributeValueLengthLimit: config.attributeValueLengthLimit,
    excludeUrls: config.traceExcludeUrls,
    maxQueueSize: config.traceQueueSize,
    exportTimeoutMs: config.traceExportTimeout,
  }
}
