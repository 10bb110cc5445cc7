/**
 * TRACES_EXPORTER=file: appends one OTLP/JSON ExportTraceServiceRequest per line, the shape the
 * OpenTelemetry Collector's file exporter writes, so the same tools read both.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'

const decoder = new TextDecoder()

export class FileJsonLinesExporter implements SpanExporter {
  private readonly stream: WriteStream
  private failed: Error | undefined

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true })
    this.stream = createWriteStream(path, { flags: 'a' })
    // Errors surface through export results; an unhandled 'error' event would kill the process.
    this.stream.on('error', (err) => {
      this.failed = err
    })
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.failed !== undefined) {
      resultCallback({ code: ExportResultCode.FAILED, error: this.failed })
      return
    }
    let line: string
    try {
      const bytes = JsonTraceSerializer.serializeRequest(spans)
      if (bytes === undefined) throw new Error('OTLP JSON serialization failed')
      line = decoder.decode(bytes) + '\n'
    } catch (err) {
      resultCallback({ code: ExportResultCode.FAILED, error: err as Error })
      return
    }
    this.stream.write(line, (err) => {
      resultCallback(err ? { code: ExportResultCode.FAILED, error: err } : { code: ExportResultCode.SUCCESS })
    })
  }

  shutdown(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stream.closed || this.stream.destroyed) return resolve()
      this.stream.end(() => resolve())
    })
  }
}
