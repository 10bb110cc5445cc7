/** Chooses and builds the span exporter named by the options. */
import { credentials, Metadata } from '@grpc/grpc-js'
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc'
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import type { SpanExporter } from '@opentelemetry/sdk-trace-base'
import { ConsoleLineExporter, type LineWriter } from './console-exporter.ts'
import { FileJsonLinesExporter } from './file-exporter.ts'
import type { TracingOptions } from './options.ts'

export function createSpanExporter(opts: TracingOptions, consoleWrite?: LineWriter): SpanExporter {
  switch (opts.exporter) {
    case 'console':
      return new ConsoleLineExporter(consoleWrite)
    case 'file':
      return new FileJsonLinesExporter(opts.filePath)
    case 'otlp':
      return opts.otlpProtocol === 'grpc' ? grpcExporter(opts) : httpProtobufExporter(opts)
    default:
      return opts.exporter satisfies never
  }
}

function grpcExporter(opts: TracingOptions): SpanExporter {
  const metadata = new Metadata()
  for (const [k, v] of Object.entries(opts.otlpHeaders)) metadata.set(k, v)
  return new GrpcTraceExporter({
    url: opts.otlpEndpoint,
    credentials: opts.otlpInsecure ? credentials.createInsecure() : credentials.createSsl(),
    metadata,
    timeoutMillis: opts.exportTimeoutMs,
  })
}

function httpProtobufExporter(opts: TracingOptions): SpanExporter {
  return new ProtoTraceExporter({
    url: tracesUrl(opts.otlpEndpoint),
    headers: { ...opts.otlpHeaders },
    timeoutMillis: opts.exportTimeoutMs,
  })
}

/** http/protobuf posts to <endpoint>/v1/traces when the endpoint has no path; a path is kept. */
function tracesUrl(endpoint: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`
  try {
    const u = new URL(withScheme)
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces'
    return u.toString()
  } catch {
    return withScheme
  }
}

/** The endpoint as a warning may name it: scheme, host and path only, no userinfo or query. */
export function describeDestination(opts: TracingOptions): string {
  if (opts.exporter === 'console') return 'console'
  if (opts.exporter === 'file') return opts.filePath
  try {
    const u = new URL(opts.otlpProtocol === 'grpc' ? opts.otlpEndpoint : tracesUrl(opts.otlpEndpoint))
    return `${opts.otlpProtocol} ${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`
  } catch {
    return opts.otlpProtocol
  }
}
