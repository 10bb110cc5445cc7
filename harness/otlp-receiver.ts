/**
 * A real OTLP trace receiver for tests and the bench's sink (bench/otlp-sink.ts): gRPC
 * (TraceService/Export) or HTTP (POST /v1/traces, application/x-protobuf or application/json),
 * decoding the wire format into plain spans. Loopback only, ephemeral port. The protobuf schema below is OTLP's own (field numbers from
 * opentelemetry-proto: collector/trace/v1, trace/v1, common/v1, resource/v1).
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync, inflateSync } from 'node:zlib'
import * as grpc from '@grpc/grpc-js'
import protobuf from 'protobufjs'

const OTLP_PROTO = `
syntax = "proto3";
package otlp;

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }

message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
}
message Status { string message = 2; int32 code = 3; }

message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
`

const root = protobuf.parse(OTLP_PROTO, { keepCase: false }).root
const RequestType = root.lookupType('otlp.ExportTraceServiceRequest')
const ResponseType = root.lookupType('otlp.ExportTraceServiceResponse')
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, bytes: String, defaults: false, arrays: true, oneofs: false }

export interface ReceivedEvent {
  name: string
  timeUnixNano: string
  attributes: Record<string, unknown>
}

export interface ReceivedLink {
  traceId: string
  spanId: string
  attributes: Record<string, unknown>
}

export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a span without a parent. */
  parentSpanId: string
  name: string
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes: Record<string, unknown>
  events: ReceivedEvent[]
  links: ReceivedLink[]
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string }
  resource: Record<string, unknown>
  scope: { name: string; version: string }
  /** Which transport delivered it. */
  via: 'grpc' | 'http/protobuf' | 'http/json'
}

export interface OtlpReceiver {
  /** 'http://127.0.0.1:PORT' (for http, post to endpoint + '/v1/traces'). */
  endpoint: string
  spans: ReceivedSpan[]
  /** Export requests seen, including empty ones. */
  requests: number
  waitForSpans(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>
  close(): Promise<void>
}

/** The processes of one request's trace, by the prefix of their thread spans' names. */
const PROCESS_SPANS = ['Server', 'Tokenizer', 'Scheduler', 'Worker']

/**
 * Waits until every span the server's processes ended before now has arrived, instead of sleeping:
 * a marker request, sampled by its caller, is sent through `send` (given its traceparent), and each
 * process exports its spans in the order they ended, so once the marker's thread span has come from
 * all four, everything before it has too.
 */
export async function exportsFlushed(receiver: OtlpReceiver, send: (traceparent: string) => Promise<void>, timeoutMs = 20_000): Promise<void> {
  const traceId = randomBytes(16).toString('hex')
  await send(`00-${traceId}-${randomBytes(8).toString('hex')}-01`)
  await receiver.waitForSpans((spans) => {
    const mine = spans.filter((s) => s.traceId === traceId)
    return PROCESS_SPANS.every((p) => mine.some((s) => s.name.startsWith(p + ' ')))
  }, timeoutMs)
}

export async function startOtlpReceiver(opts: { protocol: 'grpc' | 'http' }): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const waiters = new Set<() => void>()
  const state = { requests: 0 }
  const accept = (req: Record<string, unknown>, via: ReceivedSpan['via']): void => {
    state.requests++
    spans.push(...flatten(req, via))
    for (const w of waiters) w()
  }

  const transport = opts.protocol === 'grpc' ? await startGrpc(accept) : await startHttp(accept)

  return {
    endpoint: transport.endpoint,
    spans,
    get requests() {
      return state.requests
    },
    waitForSpans(pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pred(spans)) return
          cleanup()
          resolve(spans)
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`waitForSpans: timed out after ${timeoutMs} ms with ${spans.length} spans: ${spans.map((s) => s.name).join(', ')}`))
        }, timeoutMs)
        const cleanup = (): void => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    close: transport.close,
  }
}

type Accept = (req: Record<string, unknown>, via: ReceivedSpan['via']) => void

async function startGrpc(accept: Accept): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = new grpc.Server()
  const service: grpc.ServiceDefinition = {
    Export: {
      path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: object) => Buffer.from(RequestType.encode(RequestType.fromObject(v)).finish()),
      requestDeserialize: (buf: Buffer) => RequestType.toObject(RequestType.decode(buf), TO_OBJECT),
      responseSerialize: (v: object) => Buffer.from(ResponseType.encode(ResponseType.fromObject(v)).finish()),
      responseDeserialize: (buf: Buffer) => ResponseType.toObject(ResponseType.decode(buf), TO_OBJECT),
    },
  }
  server.addService(service, {
    Export: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
      accept(call.request, 'grpc')
      cb(null, {})
    },
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)))
  })
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        // Graceful first; exporters may hold a keep-alive channel, so force after a moment.
        const timer = setTimeout(() => {
          server.forceShutdown()
          resolve()
        }, 500)
        server.tryShutdown(() => {
          clearTimeout(timer)
          resolve()
        })
      }),
  }
}

async function startHttp(accept: Accept): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/v1/traces') {
      res.writeHead(404).end()
      return
    }
    readBody(req).then(
      (body) => {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim()
        try {
          if (type === 'application/json') {
            accept(fromJson(JSON.parse(body.toString('utf8'))), 'http/json')
            res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
          } else if (type === 'application/x-protobuf') {
            accept(RequestType.toObject(RequestType.decode(body), TO_OBJECT), 'http/protobuf')
            res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(ResponseType.encode({}).finish()))
          } else {
            res.writeHead(415).end()
          }
        } catch (err) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err))
        }
      },
      () => res.writeHead(400).end(),
    )
  })
  // Exporters keep connections alive; do not let them hold close() up.
  server.keepAliveTimeout = 1000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const raw = Buffer.concat(chunks)
  const enc = req.headers['content-encoding']
  if (enc === 'gzip') return gunzipSync(raw)
  if (enc === 'deflate') return inflateSync(raw)
  return raw
}

/**
 * OTLP/JSON (camelCase, hex ids) → the same shape protobufjs' toObject gives for the binary
 * form (base64 ids), so one flattener serves both.
 */
function fromJson(json: Record<string, unknown>): Record<string, unknown> {
  const hexToB64 = (v: unknown): string => (typeof v === 'string' && v.length > 0 ? Buffer.from(v, 'hex').toString('base64') : '')
  for (const rs of asArray(json.resourceSpans)) {
    for (const ss of asArray((rs as Rec).scopeSpans)) {
      for (const s of asArray((ss as Rec).spans) as Rec[]) {
        s.traceId = hexToB64(s.traceId)
        s.spanId = hexToB64(s.spanId)
        s.parentSpanId = hexToB64(s.parentSpanId)
        for (const l of asArray(s.links) as Rec[]) {
          l.traceId = hexToB64(l.traceId)
          l.spanId = hexToB64(l.spanId)
        }
      }
    }
  }
  return json
}

type Rec = Record<string, unknown>

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}

function b64ToHex(v: unknown): string {
  return typeof v === 'string' && v.length > 0 ? Buffer.from(v, 'base64').toString('hex') : ''
}

function flatten(req: Rec, via: ReceivedSpan['via']): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of asArray(req.resourceSpans) as Rec[]) {
    const resource = attributesOf((rs.resource as Rec | undefined)?.attributes)
    for (const ss of asArray(rs.scopeSpans) as Rec[]) {
      const scope = (ss.scope ?? {}) as Rec
      for (const s of asArray(ss.spans) as Rec[]) {
        const status = (s.status ?? {}) as Rec
        out.push({
          traceId: b64ToHex(s.traceId),
          spanId: b64ToHex(s.spanId),
          parentSpanId: b64ToHex(s.parentSpanId),
          name: String(s.name ?? ''),
          kind: Number(s.kind ?? 0),
          startTimeUnixNano: String(s.startTimeUnixNano ?? '0'),
          endTimeUnixNano: String(s.endTimeUnixNano ?? '0'),
          attributes: attributesOf(s.attributes),
          events: (asArray(s.events) as Rec[]).map((e) => ({
            name: String(e.name ?? ''),
            timeUnixNano: String(e.timeUnixNano ?? '0'),
            attributes: attributesOf(e.attributes),
          })),
          links: (asArray(s.links) as Rec[]).map((l) => ({
            traceId: b64ToHex(l.traceId),
            spanId: b64ToHex(l.spanId),
            attributes: attributesOf(l.attributes),
          })),
          status: { code: Number(status.code ?? 0), message: String(status.message ?? '') },
          resource,
          scope: { name: String(scope.name ?? ''), version: String(scope.version ?? '') },
          via,
        })
      }
    }
  }
  return out
}

function attributesOf(kvs: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const kv of asArray(kvs) as Rec[]) out[String(kv.key)] = anyValue(kv.value as Rec | undefined)
  return out
}

function anyValue(v: Rec | undefined): unknown {
  if (v === undefined || v === null) return undefined
  if ('stringValue' in v) return v.stringValue
  if ('boolValue' in v) return v.boolValue
  if ('intValue' in v) return Number(v.intValue)
  if ('doubleValue' in v) return Number(v.doubleValue)
  if ('arrayValue' in v) return asArray((v.arrayValue as Rec | undefined)?.values).map((x) => anyValue(x as Rec))
  if ('kvlistValue' in v) return attributesOf((v.kvlistValue as Rec | undefined)?.values)
  if ('bytesValue' in v) return v.bytesValue
  return undefined
}
