/**
 * A request's trace as a terminal waterfall: one line per span in tree order, indented by depth,
 * with its duration and a bar placed on the request's timeline; span events as `·` lines.
 * Also the one-line-per-trace listing of a file.
 */
import { GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_FINISH_REASONS, GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS, HTTP_REQUEST_METHOD, HTTP_ROUTE, URL_PATH } from '../tracing/attributes.ts'
import type { SpanIndex, TraceSummary } from './span-index.ts'
import type { SpanRecord } from './span-record.ts'

export interface WaterfallOptions {
  /** Bar width in characters (default 40). */
  width?: number
}

export const DEFAULT_BAR_WIDTH = 40
const MAX_NAME_WIDTH = 56
const FULL = '█'
const THIN = '▏'

interface Row {
  label: string
  time: string
  bar: string
  note: string
}

export function renderWaterfall(index: SpanIndex, traceId: string, options: WaterfallOptions = {}): string {
  const width = options.width ?? DEFAULT_BAR_WIDTH
  const summary = index.summaryOf(traceId)
  if (summary === undefined) throw new Error(`no trace ${traceId}`)
  const t0 = summary.startNs
  const total = summary.endNs - summary.startNs > 0n ? summary.endNs - summary.startNs : 1n
  const column = (ns: bigint): number => (Number(ns - t0) / Number(total)) * width

  const rows: Row[] = []
  const visit = (span: SpanRecord, depth: number, first: boolean): void => {
    const indent = '  '.repeat(depth)
    rows.push({
      label: indent + span.name,
      time: `${ms(span.endNs - span.startNs)} ms`,
      bar: bar(column(span.startNs), column(span.endNs), width),
      note: [first ? requestNote(index, span.traceId) : '', errorNote(span)].filter((s) => s !== '').join('  '),
    })
    // Events interleave with the children by time, so `first_token` reads where it happened.
    const events = [...span.events].sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0))
    let next = 0
    const eventsUntil = (ns: bigint | undefined): void => {
      for (; next < events.length && (ns === undefined || events[next]!.timeNs <= ns); next++) {
        const e = events[next]!
        const at = column(e.timeNs)
        rows.push({ label: `${indent}  · ${e.name}`, time: `@${ms(e.timeNs - t0)} ms`, bar: bar(at, at, width), note: '' })
      }
    }
    for (const child of index.childrenOf(span)) {
      eventsUntil(child.startNs)
      visit(child, depth + 1, false)
    }
    eventsUntil(undefined)
  }
  index.rootsOf(traceId).forEach((root, i) => visit(root, 0, i === 0))

  const labelWidth = Math.min(MAX_NAME_WIDTH, Math.max(...rows.map((r) => r.label.length)))
  const timeWidth = Math.max(...rows.map((r) => r.time.length))
  const header = `trace ${traceId}  rid ${summary.rid ?? '-'}  ${isoTime(t0)}  ${ms(summary.endNs - summary.startNs)} ms  ${summary.spanCount} spans`
  const lines = rows.map((r) => `${fit(r.label, labelWidth)}  ${r.time.padStart(timeWidth)}  ${r.bar}${r.note === '' ? '' : `  ${r.note}`}`.trimEnd())
  return [header, ...lines].join('\n') + '\n'
}

/** One line per trace: id, rid, start, duration, span count, what the outermost span was. */
export function renderTraceList(summaries: readonly TraceSummary[]): string {
  const rows = summaries.map((s) => [s.traceId, s.rid ?? '-', isoTime(s.startNs), `${ms(s.endNs - s.startNs)} ms`, String(s.spanCount), describeRoot(s.root)])
  const head = ['TRACE ID', 'RID', 'START', 'DURATION', 'SPANS', 'ROOT']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const rightAligned = new Set([3, 4])
  const format = (r: string[]): string =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [format(head), ...rows.map(format)].join('\n') + '\n'
}

/** `█` across the columns a span covers; `▏` where it is narrower than one column. */
function bar(from: number, to: number, width: number): string {
  const c0 = Math.round(from)
  const c1 = Math.round(to)
  if (c1 <= c0) {
    const at = Math.min(Math.max(Math.floor(from), 0), width - 1)
    return ' '.repeat(at) + THIN + ' '.repeat(width - at - 1)
  }
  return ' '.repeat(c0) + FULL.repeat(c1 - c0) + ' '.repeat(Math.max(0, width - c1))
}

/** rid, finish reason and token counts, from the request root (llm_request). */
function requestNote(index: SpanIndex, traceId: string): string {
  const parts: string[] = []
  const rid = index.requestIdOf(traceId)
  if (rid !== undefined) parts.push(`rid=${rid}`)
  const a = index.requestRootOf(traceId)?.attributes ?? {}
  const model = a[GEN_AI_REQUEST_MODEL]
  if (model !== undefined) parts.push(`model=${String(model)}`)
  const finish = a[GEN_AI_RESPONSE_FINISH_REASONS]
  if (finish !== undefined) parts.push(`finish=${Array.isArray(finish) ? finish.join(',') : String(finish)}`)
  const input = a[GEN_AI_USAGE_INPUT_TOKENS]
  const output = a[GEN_AI_USAGE_OUTPUT_TOKENS]
  if (input !== undefined || output !== undefined) parts.push(`tokens=${String(input ?? '?')}→${String(output ?? '?')}`)
  return parts.join(' ')
}

function errorNote(span: SpanRecord): string {
  if (span.status.code !== 2) return ''
  return span.status.message === undefined ? 'ERROR' : `ERROR: ${span.status.message}`
}

function describeRoot(root: SpanRecord): string {
  const method = root.attributes[HTTP_REQUEST_METHOD]
  const route = root.attributes[HTTP_ROUTE] ?? root.attributes[URL_PATH]
  return typeof method === 'string' && typeof route === 'string' ? `${method} ${route}` : root.name
}

function fit(label: string, width: number): string {
  return label.length > width ? label.slice(0, width - 1) + '…' : label.padEnd(width)
}

function ms(ns: bigint): string {
  return (Number(ns) / 1e6).toFixed(3)
}

function isoTime(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString()
}
