/**
 * The trace carrier that rides inside every per-request ZeroMQ message, and the W3C
 * traceparent/tracestate codec behind it. Parsing never throws: a malformed value reads as
 * absent, so a bad message can cost a request its trace but never its answer.
 */
import { TraceFlags, type SpanContext } from '@opentelemetry/api'
import type { CarrierLink, TraceCarrier } from './types.ts'

export type { CarrierLink, TraceCarrier } from './types.ts'

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const INVALID_TRACE_ID = '00000000000000000000000000000000'
const INVALID_SPAN_ID = '0000000000000000'
/** tracestate: at most 32 list members, 512 characters (W3C limits). */
const TRACESTATE_MAX_CHARS = 512
/** A carrier's links: a resumed attempt has one; more is never legitimate, so more are dropped. */
const MAX_CARRIER_LINKS = 4
/** A link's reason and process are short names (resumed_from, worker-0-1). */
const LINK_NAME_MAX_CHARS = 64
const TRACESTATE_MEMBER_RE = /^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/

/** Parses a W3C traceparent; null when malformed (wrong shape, version ff, all-zero ids). */
export function parseTraceparent(value: unknown, isRemote = true): SpanContext | null {
  if (typeof value !== 'string' || value.length < 55 || value.length > 512) return null
  const m = TRACEPARENT_RE.exec(value.trim())
  if (m === null) return null
  const [, version, traceId, spanId, flags, rest] = m
  if (version === 'ff') return null
  // Version 00 has exactly four fields; later versions may append more (spec: parse the first four).
  if (version === '00' && rest !== undefined) return null
  if (traceId === INVALID_TRACE_ID || spanId === INVALID_SPAN_ID) return null
  return {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: parseInt(flags!, 16) & TraceFlags.SAMPLED,
    isRemote,
  }
}

/** Formats a span context as a version-00 traceparent. */
export function formatTraceparent(sc: SpanContext): string {
  const flags = sc.traceFlags & TraceFlags.SAMPLED ? '01' : '00'
  return `00-${sc.traceId}-${sc.spanId}-${flags}`
}

/** Keeps a tracestate only when every list member is well formed; otherwise drops it whole. */
export function validTracestate(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > TRACESTATE_MAX_CHARS) return undefined
  const members = value.split(',')
  if (members.length > 32) return undefined
  for (const member of members) {
    const m = member.trim()
    if (m.length > 0 && !TRACESTATE_MEMBER_RE.test(m)) return undefined
  }
  return value
}

export function isSampled(sc: SpanContext): boolean {
  return (sc.traceFlags & TraceFlags.SAMPLED) !== 0
}

/**
 * Reads a carrier that arrived from elsewhere (a decoded JSON message field, a JSON string).
 * Returns null for anything that is not a carrier with a valid traceparent.
 */
export function readCarrier(value: unknown): TraceCarrier | null {
  let v = value
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v)
    } catch {
      return null
    }
  }
  if (v === null || typeof v !== 'object') return null
  const o = v as Record<string, unknown>
  if (parseTraceparent(o.traceparent) === null) return null
  const carrier: TraceCarrier = { traceparent: o.traceparent as string }
  const ts = validTracestate(o.tracestate)
  if (ts !== undefined) carrier.tracestate = ts
  if (parseTraceparent(o.prev) !== null) carrier.prev = o.prev as string
  if (Array.isArray(o.links)) {
    const links = readLinks(o.links)
    if (links.length > 0) carrier.links = links
  }
  return carrier
}

/** The well-formed links of a carrier (at most MAX_CARRIER_LINKS); a malformed one is left out. */
function readLinks(values: unknown[]): CarrierLink[] {
  const links: CarrierLink[] = []
  for (const v of values) {
    if (links.length === MAX_CARRIER_LINKS) break
    if (v === null || typeof v !== 'object') continue
    const l = v as Record<string, unknown>
    if (parseTraceparent(l.traceparent) === null || !isName(l.reason)) continue
    const link: CarrierLink = { traceparent: l.traceparent as string, reason: l.reason }
    if (isName(l.process)) link.process = l.process
    if (Number.isSafeInteger(l.pid)) link.pid = l.pid as number
    links.push(link)
  }
  return links
}

function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= LINK_NAME_MAX_CHARS
}

/** Builds a carrier from the request root's span context, the previous slice's, and the links passed on. */
export function makeCarrier(root: SpanContext, prev?: SpanContext, tracestate?: string, links?: CarrierLink[]): TraceCarrier {
  const carrier: TraceCarrier = { traceparent: formatTraceparent(root) }
  const ts = tracestate ?? root.traceState?.serialize()
  if (ts) carrier.tracestate = ts
  if (prev !== undefined) carrier.prev = formatTraceparent(prev)
  if (links !== undefined) carrier.links = links
  return carrier
}
