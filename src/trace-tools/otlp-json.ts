/**
 * Reads OTLP/JSON trace files into span records: JSON lines of ExportTraceServiceRequest (what
 * spanserve's file exporter and the Collector's file exporter write), a single document, or a
 * JSON array of documents. Accepts both encodings seen in the wild: the JS SDK's (intValue as a
 * number, hex ids) and the protobuf JSON mapping's (intValue as a string, enum names, base64 ids).
 */
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { AttributeMap, SpanEventRecord, SpanLinkRecord, SpanRecord } from './span-record.ts'

export interface ReadOptions {
  /** Where warnings about skipped lines go; stderr by default. */
  warn?: (message: string) => void
}

/** The file holds no spans, or is not OTLP/JSON at all. */
export class TraceFileError extends Error {
  override readonly name = 'TraceFileError'
}

const defaultWarn = (message: string): void => {
  process.stderr.write(`spanserve trace: ${message}\n`)
}

/** Reads a file line by line, so a large JSON-lines file is never held as one string. */
export async function readOtlpJsonFile(path: string, options: ReadOptions = {}): Promise<SpanRecord[]> {
  const collector = new SpanCollector(path, options.warn ?? defaultWarn)
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })
  for await (const line of lines) collector.addLine(line)
  if (collector.needsWholeText()) collector.addWholeText(await readFile(path, 'utf8'))
  return collector.finish()
}

/** The same as readOtlpJsonFile, for text already in memory. */
export function parseOtlpJson(text: string, options: ReadOptions & { source?: string } = {}): SpanRecord[] {
  const collector = new SpanCollector(options.source ?? 'input', options.warn ?? defaultWarn)
  for (const line of text.split('\n')) collector.addLine(line)
  if (collector.needsWholeText()) collector.addWholeText(text)
  return collector.finish()
}

/**
 * Line-mode parser with the fallbacks: a line that does not parse is skipped with a warning (the
 * last one is usually a process still writing); if no line parses at all, the text may be one
 * pretty-printed document, which is tried whole.
 */
class SpanCollector {
  private readonly spans: SpanRecord[] = []
  private readonly seen = new Set<string>()
  private lineNo = 0
  private documents = 0
  private badLines: number[] = []
  /** A bad line is only known to be the truncated last one once no other line follows it. */
  private pendingBadLine: number | undefined
  private firstError: string | undefined
  private malformedSpans = 0

  constructor(
    private readonly source: string,
    private readonly warn: (message: string) => void,
  ) {}

  addLine(raw: string): void {
    this.lineNo++
    const line = raw.trim()
    if (line.length === 0) return
    if (this.pendingBadLine !== undefined) this.badLines.push(this.pendingBadLine)
    this.pendingBadLine = undefined
    let doc: unknown
    try {
      doc = JSON.parse(line)
    } catch (err) {
      this.pendingBadLine = this.lineNo
      this.firstError ??= (err as Error).message
      return
    }
    this.addParsed(doc, `line ${this.lineNo}`)
  }

  needsWholeText(): boolean {
    return this.documents === 0 && (this.badLines.length > 0 || this.pendingBadLine !== undefined)
  }

  addWholeText(text: string): void {
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch {
      throw new TraceFileError(`${this.source} is not OTLP JSON (${this.firstError ?? 'unparseable'})`)
    }
    this.badLines = []
    this.pendingBadLine = undefined
    this.addParsed(doc, 'document')
  }

  finish(): SpanRecord[] {
    if (this.badLines.length > 0) {
      const shown = this.badLines.slice(0, 5).join(', ')
      const more = this.badLines.length > 5 ? ` and ${this.badLines.length - 5} more` : ''
      this.warn(`${this.source}: skipped line(s) ${shown}${more}: not valid JSON`)
    }
    if (this.pendingBadLine !== undefined) {
      this.warn(`${this.source}: skipped incomplete last line ${this.pendingBadLine} (a process may still be writing)`)
    }
    if (this.malformedSpans > 0) {
      this.warn(`${this.source}: skipped ${this.malformedSpans} span(s) without valid ids or times`)
    }
    if (this.spans.length === 0) throw new TraceFileError(`no spans found in ${this.source}`)
    return this.spans
  }

  private addParsed(doc: unknown, where: string): void {
    const docs = Array.isArray(doc) ? doc : [doc]
    for (const d of docs) {
      const resourceSpans = isObject(d) ? (d.resourceSpans ?? d.resource_spans) : undefined
      if (!Array.isArray(resourceSpans)) {
        this.warn(`${this.source}: ${where} has no resourceSpans; skipped`)
        continue
      }
      this.documents++
      for (const rs of resourceSpans) this.addResourceSpans(rs)
    }
  }

  private addResourceSpans(rs: unknown): void {
    if (!isObject(rs)) return
    const resource = decodeKeyValues(isObject(rs.resource) ? rs.resource.attributes : undefined)
    // instrumentationLibrarySpans: the name before OTLP 0.15, still written by old Collectors.
    const scopes = rs.scopeSpans ?? rs.scope_spans ?? rs.instrumentationLibrarySpans
    if (!Array.isArray(scopes)) return
    for (const ss of scopes) {
      if (!isObject(ss) || !Array.isArray(ss.spans)) continue
      const rawScope = ss.scope ?? ss.instrumentationLibrary
      const scope = {
        name: isObject(rawScope) && typeof rawScope.name === 'string' ? rawScope.name : '',
        ...(isObject(rawScope) && typeof rawScope.version === 'string' ? { version: rawScope.version } : {}),
      }
      for (const raw of ss.spans) {
        const span = decodeSpan(raw, resource, scope)
        if (span === undefined) {
          this.malformedSpans++
          continue
        }
        // Re-exported or concatenated files can repeat a span; the first copy wins.
        const key = `${span.traceId}/${span.spanId}`
        if (this.seen.has(key)) continue
        this.seen.add(key)
        this.spans.push(span)
      }
    }
  }
}

function decodeSpan(raw: unknown, resource: AttributeMap, scope: SpanRecord['scope']): SpanRecord | undefined {
  if (!isObject(raw)) return undefined
  const traceId = decodeId(raw.traceId, 16)
  const spanId = decodeId(raw.spanId, 8)
  const startNs = decodeNanos(raw.startTimeUnixNano)
  if (traceId === undefined || spanId === undefined || startNs === undefined) return undefined
  const endNs = decodeNanos(raw.endTimeUnixNano) ?? startNs
  const parentSpanId = decodeId(raw.parentSpanId, 8)
  const status = isObject(raw.status) ? raw.status : {}
  return {
    traceId,
    spanId,
    ...(parentSpanId !== undefined ? { parentSpanId } : {}),
    name: typeof raw.name === 'string' ? raw.name : '',
    kind: decodeEnum(raw.kind, SPAN_KINDS),
    startNs,
    endNs: endNs < startNs ? startNs : endNs,
    attributes: decodeKeyValues(raw.attributes),
    events: Array.isArray(raw.events) ? raw.events.flatMap(decodeEvent) : [],
    links: Array.isArray(raw.links) ? raw.links.flatMap(decodeLink) : [],
    status: {
      code: decodeEnum(status.code, STATUS_CODES),
      ...(typeof status.message === 'string' && status.message !== '' ? { message: status.message } : {}),
    },
    resource,
    scope,
  }
}

function decodeEvent(raw: unknown): SpanEventRecord[] {
  if (!isObject(raw)) return []
  const timeNs = decodeNanos(raw.timeUnixNano)
  if (timeNs === undefined) return []
  return [{ name: typeof raw.name === 'string' ? raw.name : '', timeNs, attributes: decodeKeyValues(raw.attributes) }]
}

function decodeLink(raw: unknown): SpanLinkRecord[] {
  if (!isObject(raw)) return []
  const traceId = decodeId(raw.traceId, 16)
  const spanId = decodeId(raw.spanId, 8)
  if (traceId === undefined || spanId === undefined) return []
  return [{ traceId, spanId, attributes: decodeKeyValues(raw.attributes) }]
}

function decodeKeyValues(raw: unknown): AttributeMap {
  const out: AttributeMap = {}
  if (!Array.isArray(raw)) return out
  for (const kv of raw) {
    if (isObject(kv) && typeof kv.key === 'string') out[kv.key] = decodeAnyValue(kv.value)
  }
  return out
}

/** OTLP AnyValue → plain value; an empty AnyValue reads as null. */
function decodeAnyValue(v: unknown): unknown {
  if (!isObject(v)) return null
  if ('stringValue' in v) return v.stringValue
  if ('intValue' in v) return decodeInt(v.intValue)
  if ('doubleValue' in v) return typeof v.doubleValue === 'string' ? Number(v.doubleValue) : v.doubleValue
  if ('boolValue' in v) return v.boolValue
  if ('arrayValue' in v) {
    const values = isObject(v.arrayValue) ? v.arrayValue.values : undefined
    return Array.isArray(values) ? values.map(decodeAnyValue) : []
  }
  if ('kvlistValue' in v) return decodeKeyValues(isObject(v.kvlistValue) ? v.kvlistValue.values : undefined)
  if ('bytesValue' in v) return v.bytesValue
  return null
}

/** int64 arrives as a string in the protobuf JSON mapping; kept as a string only if a double would round it. */
function decodeInt(v: unknown): unknown {
  if (typeof v !== 'string') return v
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : v
}

function decodeNanos(v: unknown): bigint | undefined {
  try {
    if (typeof v === 'string' && /^\d+$/.test(v)) return BigInt(v)
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return BigInt(Math.round(v))
  } catch {
    // falls through: not a time
  }
  return undefined
}

/** Hex as the JS SDK and Collector write ids; base64 as the generic protobuf JSON mapping does. */
function decodeId(v: unknown, bytes: number): string | undefined {
  if (typeof v !== 'string' || v === '') return undefined
  if (v.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(v)) return allZero(v) ? undefined : v.toLowerCase()
  const buf = Buffer.from(v, 'base64')
  if (buf.length !== bytes) return undefined
  const hex = buf.toString('hex')
  return allZero(hex) ? undefined : hex
}

function allZero(hex: string): boolean {
  return /^0+$/.test(hex)
}

const SPAN_KINDS = ['SPAN_KIND_UNSPECIFIED', 'SPAN_KIND_INTERNAL', 'SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER', 'SPAN_KIND_CONSUMER']
const STATUS_CODES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR']

function decodeEnum(v: unknown, names: string[]): number {
  if (typeof v === 'number') return v
  if (typeof v === 'string') {
    const i = names.indexOf(v)
    return i >= 0 ? i : Number.isInteger(Number(v)) ? Number(v) : 0
  }
  return 0
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
