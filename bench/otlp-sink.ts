/**
 * A live OTLP gRPC receiver in its own process, for the tracing-on runs: the spans are really sent,
 * encoded and framed over the wire, but not by the processes being measured. Prints
 * {"endpoint":"127.0.0.1:PORT"} once listening; answers each "count" line on stdin with
 * {"spans":N,"requests":M,"cpuMs":C} (C: this process's CPU time so far); exits when stdin closes or
 * on SIGTERM.
 *
 * --decode deferred (default): each export's bytes are kept as they arrive and decoded (only down to
 * the spans, to count them) at the next "count", i.e. between levels. In a deployment the collector
 * that decodes spans runs on other cores or another host; on this 2-core machine decoding every span
 * as it arrives (protobufjs, the whole OTLP schema, ~50k spans per run) took CPU from the very server
 * being measured and was charged to tracing. --decode live does that (the bench before 2026-11-22):
 * harness/otlp-receiver.ts, full decode per export.
 * Run: node --import tsx bench/otlp-sink.ts [--decode deferred|live]
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import protobuf from 'protobufjs'
import { startOtlpReceiver } from '../harness/otlp-receiver.ts'

const { values } = parseArgs({ options: { decode: { type: 'string', default: 'deferred' } } })
const write = (obj: object): void => void process.stdout.write(`${JSON.stringify(obj)}\n`)
const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

interface Sink {
  endpoint: string
  /** Spans and export requests received so far (decoding what is pending). */
  count(): { spans: number; requests: number }
  close(): Promise<void>
}

/** Only as much of OTLP's schema as counting spans needs: the spans themselves stay bytes. */
const COUNT_PROTO = `
syntax = "proto3";
package count;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { repeated ScopeSpans scope_spans = 2; }
message ScopeSpans { repeated bytes spans = 2; }
`
const CountRequest = protobuf.parse(COUNT_PROTO).root.lookupType('count.ExportTraceServiceRequest')

async function deferredSink(): Promise<Sink> {
  const pending: Buffer[] = []
  let spans = 0
  let requests = 0
  const server = new grpc.Server()
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        // An empty ExportTraceServiceResponse is zero bytes.
        responseSerialize: () => Buffer.alloc(0),
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        requests++
        pending.push(call.request)
        callback(null, Buffer.alloc(0))
      },
    },
  )
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))))
  return {
    endpoint: `127.0.0.1:${port}`,
    count() {
      for (const buf of pending.splice(0)) {
        const req = CountRequest.decode(buf) as unknown as { resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[] }
        for (const rs of req.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans += ss.spans?.length ?? 0
      }
      return { spans, requests }
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  }
}

async function liveSink(): Promise<Sink> {
  const receiver = await startOtlpReceiver({ protocol: 'grpc' })
  let spans = 0
  /** Counted spans are dropped at once: only the count is kept, so a long run holds no memory. */
  const drain = (): void => {
    spans += receiver.spans.length
    receiver.spans.length = 0
  }
  const timer = setInterval(drain, 250)
  return {
    endpoint: receiver.endpoint.replace(/^http:\/\//, ''),
    count() {
      drain()
      return { spans, requests: receiver.requests }
    },
    async close() {
      clearInterval(timer)
      await receiver.close()
    },
  }
}

const sink = values.decode === 'live' ? await liveSink() : await deferredSink()

let closing = false
const close = async (): Promise<void> => {
  if (closing) return
  closing = true
  await sink.close()
  process.exit(0)
}
process.on('SIGTERM', () => void close())
process.on('SIGINT', () => void close())

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (line.trim() !== 'count') return
  write({ ...sink.count(), cpuMs: cpuMs() })
})
lines.on('close', () => void close())

write({ endpoint: sink.endpoint, decode: values.decode })
