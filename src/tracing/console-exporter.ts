/** TRACES_EXPORTER=console: one readable line per span, for a terminal or a log file. */
import { ExportResultCode, hrTimeToMicroseconds, type ExportResult } from '@opentelemetry/core'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'

export type LineWriter = (line: string) => void

const STATUS = ['', ' status=OK', ' status=ERROR'] as const

function formatSpanLine(span: ReadableSpan): string {
  const sc = span.spanContext()
  const parent = span.parentSpanContext?.spanId ?? '-'
  const durMs = (hrTimeToMicroseconds(span.duration) / 1000).toFixed(3)
  const attrs = Object.keys(span.attributes).length > 0 ? ` ${JSON.stringify(span.attributes)}` : ''
  const events = span.events.length > 0 ? ` events=[${span.events.map((e) => e.name).join(',')}]` : ''
  const links = span.links.length > 0 ? ` links=[${span.links.map((l) => l.context.spanId).join(',')}]` : ''
  const status = STATUS[span.status.code] ?? ''
  return `[trace] ${span.name} trace=${sc.traceId} span=${sc.spanId} parent=${parent} dur=${durMs}ms${status}${events}${links}${attrs}`
}

export class ConsoleLineExporter implements SpanExporter {
  constructor(private readonly write: LineWriter = (line) => process.stdout.write(line + '\n')) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    try {
      for (const span of spans) this.write(formatSpanLine(span))
      resultCallback({ code: ExportResultCode.SUCCESS })
    } catch (err) {
      resultCallback({ code: ExportResultCode.FAILED, error: err as Error })
    }
  }

  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}
