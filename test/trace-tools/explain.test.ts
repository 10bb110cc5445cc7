import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main } from '../../src/trace-tools/cli.ts'
import { explainRequest } from '../../src/trace-tools/explain.ts'
import { parseOtlpJson } from '../../src/trace-tools/otlp-json.ts'
import { SpanIndex } from '../../src/trace-tools/span-index.ts'
import { span } from './fixture.ts'

/**
 * A real run (one DP group, --trace-level 3, --max-prefill-tokens 16): a request alone (the first,
 * with the model's warm-up); one decoding 24 tokens while a 47-token prompt prefills in three chunks
 * (steps 32 to 34) and a third request prefills during the long prompt's decode (step 36); two more
 * alone; and a 48-token request whose worker was SIGKILLed mid-decode, resumed 2.5 s later on the
 * restarted worker (the dead worker's thread span never reached the file; its slices did).
 */
const FILE = fileURLToPath(new URL('./fixtures/dp1-seven-requests-resumed.jsonl', import.meta.url))
const RESUMED = { traceId: '04a5a31f27354b54e1a4a58465613347', rid: 'a2843aee37493c1a62378893' }
const DECODING = { traceId: 'bc414aac6bb8289ef2d8a24ad7b22c9d', rid: '41246038185fdfd5623f81fe' }
const CHUNKED = { traceId: 'c72cc0b1655436735d5abffec2cca5f5', rid: '2a58778cb0af7140a22102e5' }

type Run = { status: number; stdout: string; stderr: string }

async function spanserve(...args: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const status = await main(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { status, stdout, stderr }
}

interface Metric {
  value: number | null
  median_of_others: number | null
  ratio: number | null
}

async function explainJson(...args: string[]): Promise<Record<string, unknown> & { metrics: Record<string, Metric> }> {
  const r = await spanserve('trace', 'explain', FILE, '--json', ...args)
  if (r.status !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}

/** Each llm_request's duration in ms, read straight off the file. */
function requestDurations(): Map<string, number> {
  const spans = parseOtlpJson(readFileSync(FILE, 'utf8'), { warn: () => {} })
  return new Map(spans.filter((s) => s.name === 'llm_request').map((s) => [s.traceId, Number(s.endNs - s.startNs) / 1e6]))
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b)
  return v.length % 2 === 1 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2
}

t.test('without --trace or --rid: the slowest request, and the output says so', async (t) => {
  const r = await spanserve('trace', 'explain', FILE)
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  const lines = r.stdout.split('\n')
  t.equal(lines[0], `request ${RESUMED.rid}  trace ${RESUMED.traceId}`)
  t.match(lines[1], /^the slowest of the 7 requests in .*dp1-seven-requests-resumed\.jsonl/)
  t.equal(lines[2], 'tokens 3 in, 48 out, finish length, resumed once')
  t.match(r.stdout, /^ +this request +median of 6 others +ratio$/m)
  t.match(r.stdout, /^end-to-end +2881\.757 ms +67\.347 ms +42\.8×$/m)
  t.match(r.stdout, /^ {2}restarts \(1 resume\) +2748\.399 ms +0\.000 ms +-$/m)

  const durations = requestDurations()
  const slowest = [...durations.entries()].reduce((a, b) => (b[1] > a[1] ? b : a))
  t.equal(slowest[0], RESUMED.traceId, 'it is the longest llm_request in the file')
})

t.test('the resumed request: its restart, and the dead worker’s slices counted', async (t) => {
  const x = await explainJson()
  t.equal(x.chosen, 'slowest')
  t.equal(x.requests, 7)
  t.equal(x.trace_id, RESUMED.traceId)
  t.equal(x.resumes, 1)
  // The first attempt: 1 prefill and 6 decode steps exported before the kill; the second: a 17-token
  // re-prefill (the prompt and the 14 tokens carried) in two chunks, then 33 decode steps.
  t.equal(x.prefill_runs, 3)
  t.equal(x.decode_steps, 39)
  const m = x.metrics
  t.equal(m.e2e_ms!.value, 2881.757)
  // From the dead worker's last exported decode step (ended at +881.561 ms) to the restarted
  // worker's first chunk (+3630.437 ms), less the resumed attempt's 0.476 ms in the queue.
  t.equal(m.restart_ms!.value, 2748.399)
  t.equal(m.queue_ms!.value, 0.815, 'both attempts queued: 0.340 + 0.476 ms')
  t.equal(m.ttft_ms!.value, 6.781, "the first token came from the first attempt (llm_request's gen_ai.latency.time_to_first_token)")

  const others = [...requestDurations().entries()].filter(([id]) => id !== RESUMED.traceId).map(([, d]) => d)
  t.equal(others.length, 6)
  t.equal(m.e2e_ms!.median_of_others, Math.round(median(others) * 1000) / 1000, 'the median of the six others')
  t.equal(m.e2e_ms!.ratio, Math.round((2881.757 / median(others)) * 1000) / 1000)

  const parts = ['queue_ms', 'prefill_ms', 'decode_ms', 'stalled_by_other_prefills_ms', 'restart_ms', 'other_ms'].map((k) => m[k]!.value!)
  t.ok(Math.abs(parts.reduce((a, b) => a + b) - m.e2e_ms!.value!) < 0.01, 'the parts add up to end-to-end')
  t.ok(m.other_ms!.value! >= 0)
})

t.test('decode steps shared with another request’s prefill chunks', async (t) => {
  const x = await explainJson('--trace', DECODING.traceId.slice(0, 8))
  t.equal(x.chosen, 'selected')
  t.equal(x.rid, DECODING.rid)
  t.equal(x.decode_steps, 23)
  // Steps 32 and 33 ran the long prompt's first two chunks (3.994 and 4.656 ms) before this request's decode.
  t.equal(x.stalled_steps, 2)
  t.equal(x.metrics.stalled_by_other_prefills_ms!.value, 8.65)
  t.equal(x.metrics.queue_ms!.value, 0.592)
  t.equal(x.metrics.prefill_ms!.value, 3.043)

  const table = await spanserve('trace', 'explain', FILE, '--trace', DECODING.traceId)
  t.equal(table.status, 0)
  t.notMatch(table.stdout, /slowest/, 'a chosen request is not called the slowest')
  t.match(table.stdout, /^ {2}stalled by others' prefills \(2 of 23 steps\) +8\.650 ms +0\.000 ms +-$/m)

  const chunked = await explainJson('--rid', CHUNKED.rid)
  t.equal(chunked.trace_id, CHUNKED.traceId)
  t.equal(chunked.prefill_runs, 3, 'two chunked_prefill and the last prefill_forward')
  t.equal(chunked.metrics.prefill_ms!.value, 18.468)
  t.equal(chunked.stalled_steps, 1, 'step 36 prefilled the third request before its decode')
  t.equal(chunked.metrics.stalled_by_other_prefills_ms!.value, 3.047)
  t.equal(chunked.metrics.ttft_ms!.value, 33.064)
})

t.test('below level 3: other requests’ prefills inside the decode_loop, on the same worker only', async (t) => {
  const server = { 'service.name': 'spanserve', 'host.name': 'h', 'process.pid': 1, 'spanserve.process.role': 'server' }
  const request = (traceId: string, rid: string, endMs: number) => {
    const root = span({ traceId, name: 'llm_request', startMs: 0, endMs, resource: server, attributes: { 'spanserve.request.id': rid, 'gen_ai.usage.output_tokens': 3 } })
    const thread = span({ traceId, name: 'Worker [TP 0]', parentSpanId: root.spanId, startMs: 1, endMs: endMs - 1, attributes: { 'spanserve.request.id': rid } })
    return { root, thread }
  }
  const a = request('a'.repeat(32), 'ra', 60)
  const b = request('b'.repeat(32), 'rb', 30)
  const spans = [
    a.root,
    a.thread,
    span({ traceId: a.root.traceId, name: 'prefill_forward', parentSpanId: a.thread.spanId, startMs: 2, endMs: 8 }),
    span({ traceId: a.root.traceId, name: 'decode_loop', parentSpanId: a.thread.spanId, startMs: 10, endMs: 50 }),
    b.root,
    b.thread,
    // Half inside a's decode loop on a's worker: 5 ms of stall; the same run on another worker: none.
    span({ traceId: b.root.traceId, name: 'prefill_forward', parentSpanId: b.thread.spanId, startMs: 5, endMs: 15 }),
    span({ traceId: b.root.traceId, name: 'prefill_forward', parentSpanId: b.thread.spanId, startMs: 20, endMs: 30, pid: 200 }),
  ]
  const x = explainRequest(new SpanIndex(spans))
  t.equal(x.request.rid, 'ra')
  t.equal(x.request.stalledSteps, undefined, 'no steps below level 3')
  const row = (key: string) => x.rows.find((r) => r.key === key)!
  t.equal(row('stalledMs').value, 5)
  t.equal(row('decodeMs').value, 40)
  t.equal(row('prefillMs').value, 6)
  t.equal(row('e2eMs').medianOfOthers, 30)
  t.equal(row('e2eMs').ratio, 2)
})

t.test('errors: one line, no stack, exit status 1', async (t) => {
  const line = (...spans: { traceId: string; name: string }[]): string =>
    JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [] },
          scopeSpans: [{ scope: { name: 'x' }, spans: spans.map((s, i) => ({ ...s, spanId: String(i + 1).padStart(16, '0'), startTimeUnixNano: '1', endTimeUnixNano: '2' })) }],
        },
      ],
    }) + '\n'
  const http = { traceId: 'c'.repeat(32), name: 'GET /' }
  const request = { traceId: 'e'.repeat(32), name: 'llm_request' }
  const dir = t.testdir({ 'empty.jsonl': '', 'notes.txt': 'not a trace\n', 'http-only.jsonl': line(http), 'mixed.jsonl': line(http, request) })
  const cases: [string[], RegExp][] = [
    [[FILE, '--trace', 'ffff'], /^spanserve: no trace ffff in .*\n$/],
    [[FILE, '--rid', 'nope'], /^spanserve: no request with rid nope in .*\n$/],
    [[join(dir, 'empty.jsonl')], /^spanserve: no spans found in .*empty\.jsonl\n$/],
    [[join(dir, 'notes.txt')], /^spanserve: .*notes\.txt is not OTLP JSON/],
    [[join(dir, 'missing.jsonl')], /^spanserve: cannot read .*missing\.jsonl: no such file\n$/],
    [[join(dir, 'http-only.jsonl')], /^spanserve: no requests in the file: no llm_request span/],
    [[join(dir, 'mixed.jsonl'), '--trace', 'c'.repeat(32)], /^spanserve: trace c{32} has no llm_request span: nothing to explain\n$/],
  ]
  for (const [args, message] of cases) {
    const r = await spanserve('trace', 'explain', ...args)
    t.equal(r.status, 1, `explain ${args.join(' ')}`)
    t.match(r.stderr, message)
    t.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line')
    t.notMatch(r.stderr, /Usage:|\n {4}at /, 'no usage text, no stack')
    t.equal(r.stdout, '')
  }
  const bad = await spanserve('trace', 'explain', FILE, '--width', '20')
  t.equal(bad.status, 2, 'show’s options are not explain’s')
})
