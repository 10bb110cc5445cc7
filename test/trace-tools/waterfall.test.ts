import t from 'tap'
import { SpanIndex } from '../../src/trace-tools/span-index.ts'
import { renderTraceList, renderWaterfall } from '../../src/trace-tools/waterfall.ts'
import { FIXTURE, fixtureSpans, span } from './fixture.ts'

const index = new SpanIndex(fixtureSpans())
const [traceId] = index.tracesWithRequestId(FIXTURE.rid) as [string]

t.test('a rid selects its trace', async (t) => {
  t.equal(traceId, FIXTURE.traceId)
  t.same(index.tracesWithRequestId('nope'), [])
})

t.test("a request's spans in tree order, indented by depth, with durations and bars", async (t) => {
  const out = renderWaterfall(index, traceId)
  const lines = out.trimEnd().split('\n')
  t.match(lines[0], new RegExp(`^trace ${FIXTURE.traceId}  rid ${FIXTURE.rid}  \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z  \\d+\\.\\d{3} ms  28 spans$`))

  const spanLines = lines.slice(1).filter((l) => !l.trimStart().startsWith('·'))
  t.equal(spanLines.length, 28, 'one line per span')
  const names = spanLines.map((l) => l.trimStart().split(/ {2,}/)[0]!)
  const depth = (l: string): number => (l.length - l.trimStart().length) / 2
  // The HTTP span, then llm_request, then a thread span per process with its slices under it.
  t.equal(names[0], 'request')
  t.equal(depth(spanLines[0]!), 0)
  const at = (name: string): number => names.indexOf(name)
  t.ok(at('llm_request') > 0 && depth(spanLines[at('llm_request')]!) === 1)
  const worker = names.findIndex((n) => n.startsWith('Worker [TP 0] [DP 0]'))
  t.equal(depth(spanLines[worker]!), 2)
  t.same(names.slice(worker + 1, worker + 9), ['prefill_forward', ...Array(7).fill('decode_forward')], 'the worker slices, prefill then each decode step, under their thread span')
  for (const l of spanLines.slice(worker + 1, worker + 9)) t.equal(depth(l), 3)
  const tokenizer = names.findIndex((n) => n.startsWith('Tokenizer ['))
  t.same(names.slice(tokenizer + 1, tokenizer + 3), ['tokenize', 'dpc_dispatch'])

  // Durations: aligned, in ms, matching the spans.
  const tokenize = index.spansOf(traceId).find((s) => s.name === 'tokenize')!
  const expected = (Number(tokenize.endNs - tokenize.startNs) / 1e6).toFixed(3)
  t.match(spanLines[at('tokenize')], new RegExp(` ${expected.replace('.', '\\.')} ms `))
  const msColumn = new Set(spanLines.map((l) => l.indexOf(' ms ')))
  t.equal(msColumn.size, 1, 'durations right-aligned in one column')

  // The root line carries the request's key attributes.
  t.match(spanLines[0], new RegExp(`rid=${FIXTURE.rid} model=default finish=length tokens=4→8$`))
  // Bars: 40 cells (trailing blanks trimmed), the outermost span nearly full.
  const barOf = (l: string): string => l.slice(l.indexOf(' ms ') + 5, l.indexOf(' ms ') + 5 + 40).padEnd(40)
  t.match(barOf(spanLines[0]!), /^█{39,40} ?$/)
  for (const l of spanLines) t.match(barOf(l), /^[ █▏]{40}$/)
  t.ok(
    spanLines.some((l) => barOf(l).includes('▏')),
    'sub-column spans drawn thin',
  )

  // Events sit under their span, in time order among its children.
  const events = lines.filter((l) => l.trimStart().startsWith('·')).map((l) => l.trim().split(/ +/)[1])
  t.same(events, ['first_token', 'finished'])
  t.match(out, /· first_token +@\d+\.\d{3} ms/)
})

t.test('--width scales the bar', async (t) => {
  const lines = renderWaterfall(index, traceId, { width: 12 }).trimEnd().split('\n')
  t.match(lines[1], /\d ms {2}█{11,12} {2,3}rid=/)
  for (const l of lines.slice(1)) {
    const bar = l.slice(l.indexOf(' ms ') + 5, l.indexOf(' ms ') + 5 + 12).padEnd(12)
    t.match(bar, /^[ █▏]{12}$/)
  }
})

t.test('the trace list: one line per trace, in start order', async (t) => {
  const lines = renderTraceList(index.summaries()).trimEnd().split('\n')
  t.match(lines[0], /^TRACE ID +RID +START +DURATION +SPANS +ROOT$/)
  t.equal(lines.length, 1 + FIXTURE.traces)
  t.match(lines[1], new RegExp(`^${FIXTURE.traceId}  ${FIXTURE.rid}  \\S+Z +\\d+\\.\\d{3} ms +28  POST /v1/completions$`))
  t.match(lines.at(-1), /POST \/v1\/chat\/completions$/)
})

t.test('errors are shown; a trace without a rid still renders', async (t) => {
  const root = span({ name: 'job', startMs: 0, endMs: 4 })
  const failed = span({ name: 'step', startMs: 1, endMs: 2, parentSpanId: root.spanId, status: { code: 2, message: 'boom' } })
  const idx = new SpanIndex([root, failed])
  const out = renderWaterfall(idx, root.traceId, { width: 4 })
  t.equal(out, [`trace ${root.traceId}  rid -  2023-11-14T22:13:20.000Z  4.000 ms  2 spans`, 'job     4.000 ms  ████', '  step  1.000 ms   █    ERROR: boom', ''].join('\n'))
  t.match(renderTraceList(idx.summaries()), / - {2,}2023-11-14T22:13:20\.000Z +4\.000 ms +2 {2}job\n$/)
})
