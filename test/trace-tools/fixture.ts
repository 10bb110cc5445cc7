/**
 * The recorded fixture (a real spanserve run: --dp-size 2, --trace-level 3, four requests, two of
 * them concurrent, one streamed completion and one streamed chat) and a builder for synthetic spans.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseOtlpJson } from '../../src/trace-tools/otlp-json.ts'
import type { SpanRecord } from '../../src/trace-tools/span-record.ts'

export const FIXTURE_PATH = fileURLToPath(new URL('./fixtures/dp2-four-requests.jsonl', import.meta.url))

export const FIXTURE = {
  spans: 94,
  /** server, tokenizer, two schedulers, two workers */
  processes: 6,
  traces: 4,
  /** The first request: a non-streamed completion, max_tokens 8, on DP 0. */
  rid: 'ad77a1363f51ff680b75e2a0',
  traceId: 'e04f19fff9b92c6f55d27c980a92734d',
} as const

export function fixtureText(): string {
  return readFileSync(FIXTURE_PATH, 'utf8')
}

export function fixtureSpans(): SpanRecord[] {
  return parseOtlpJson(fixtureText(), { source: 'fixture', warn: () => {} })
}

let nextId = 1

/** A span with times in milliseconds from an arbitrary origin (kept whole-millisecond aligned). */
export function span(fields: Partial<SpanRecord> & { name: string; startMs: number; endMs: number; pid?: number }): SpanRecord {
  const { startMs, endMs, pid = 100, ...rest } = fields
  const origin = 1_700_000_000_000_000_000n
  return {
    traceId: 'ab'.repeat(16),
    spanId: (nextId++).toString(16).padStart(16, '0'),
    kind: 1,
    startNs: origin + BigInt(Math.round(startMs * 1e6)),
    endNs: origin + BigInt(Math.round(endMs * 1e6)),
    attributes: {},
    events: [],
    links: [],
    status: { code: 0 },
    resource: { 'service.name': 'spanserve', 'host.name': 'h', 'process.pid': pid, 'spanserve.process.role': 'worker' },
    scope: { name: 'spanserve' },
    ...rest,
  }
}
