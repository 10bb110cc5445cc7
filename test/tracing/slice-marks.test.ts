/**
 * Slice marks and carrier links, the two halves of a resumed request's link to the dead process's
 * last slice: a process reports each request's latest *exported* top-level slice (in its own thread
 * or from its tracing thread), and a carrier's links become OTel links on the thread span of every
 * process that continues the request, passed on with its own carrier.
 */
import t, { type Test } from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { one, startsWith, tracedSession } from './fixtures/harness.ts'

interface Marks {
  rids: string[]
  slices: string[]
}

function collect(t: Test): Marks[] {
  const got: Marks[] = []
  tracing.reportSliceMarks((rids, slices) => got.push({ rids, slices }))
  t.teardown(() => tracing.reportSliceMarks(undefined))
  return got
}

const traceId = '0af7651916cd43dd8448eb211c80319c'
const carrier = (links?: tracing.CarrierLink[]): tracing.TraceCarrier => ({
  traceparent: `00-${traceId}-b7ad6b7169203331-01`,
  prev: `00-${traceId}-00f067aa0ba902b7-01`,
  ...(links ? { links } : {}),
})
const tp = (spanId: string) => `00-${traceId}-${spanId}-01`

t.test('each export reports the latest exported top-level slice of each request, until its thread span ends', async (t) => {
  const s = await tracedSession(t, { level: 3 }, { role: 'tokenizer' })
  const marks = collect(t)
  tracing.reqStart('a', carrier())
  tracing.reqStart('b', carrier())
  tracing.sliceStart('a', tracing.SLICES.tokenize)
  tracing.sliceStart('a', 'nested', { level: 1 })
  tracing.sliceEnd('a', 'nested')
  tracing.sliceEnd('a', tracing.SLICE.tokenize)
  t.same(marks, [], 'nothing before an export')
  await tracing.flushTracing()
  t.equal(marks.length, 1, 'one report per export')
  t.same(marks[0]?.rids, ['a'], 'for the request that exported a slice')
  const now = tracing.nowNs()
  tracing.batchSlice(['a', 'b'], tracing.SLICE.detokenize, now, now + 1000)
  tracing.batchSlice(['a'], tracing.SLICE.detokenize, now + 2000, now + 3000)
  await tracing.flushTracing()
  t.same(marks[1]?.rids, ['a', 'b'])
  tracing.reqFinish('a')
  tracing.reqFinish('b')
  await tracing.flushTracing()
  t.equal(marks.length, 2, 'a finished request is reported no more')

  const spans = await s.finish()
  const byId = new Map(spans.map((x) => [x.spanId, x]))
  const tokenize = one(spans, 'tokenize')
  t.same(marks[0]?.slices, [tp(tokenize.spanId)], 'the top-level slice, not the one nested in it')
  const [aThread, bThread] = ['a', 'b'].map((rid) => startsWith(spans, 'Tokenizer').find((x) => x.attributes['spanserve.request.id'] === rid)!)
  const detok = spans.filter((x) => x.name === 'detokenize')
  const aLast = detok
    .filter((x) => x.parentSpanId === aThread!.spanId)
    .sort((x, y) => Number(BigInt(x.startTimeUnixNano) - BigInt(y.startTimeUnixNano)))
    .at(-1)!
  const bLast = detok.find((x) => x.parentSpanId === bThread!.spanId)!
  t.same(marks[1]?.slices, [tp(aLast.spanId), tp(bLast.spanId)], "each request's latest slice of the export")
  t.ok(
    marks.flatMap((m) => m.slices).every((x) => byId.has(x.split('-')[2]!)),
    'every mark names a span the collector received',
  )
})

t.test('no sink (the server, or one that stopped asking): no marks', async (t) => {
  const s = await tracedSession(t, {}, { role: 'scheduler', dpRank: 0 })
  const got: string[] = []
  tracing.reportSliceMarks((rids) => got.push(...rids))
  tracing.reportSliceMarks(undefined)
  tracing.reqStart('a', carrier())
  tracing.sliceStart('a', tracing.SLICES.prefillWaiting)
  tracing.sliceEnd('a', tracing.SLICE.prefillWaiting)
  tracing.reqFinish('a')
  await s.finish()
  t.same(got, [])
})

t.test("a worker's tracing thread reports its marks to the main thread's sink", async (t) => {
  const s = await tracedSession(t, { level: 2 }, { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true })
  const marks = collect(t)
  tracing.reqStart('w', carrier())
  const now = tracing.nowNs()
  tracing.batchSlice(['w'], tracing.SLICES.prefillForward, now, now + 1000)
  for (let i = 1; i <= 3; i++) tracing.batchSlice(['w'], tracing.SLICES.decodeForward, now + i * 2000, now + i * 2000 + 1000)
  await tracing.flushTracing()
  t.equal(marks.length, 1)
  t.same(marks[0]?.rids, ['w'])
  tracing.reqFinish('w')
  const spans = await s.finish()
  t.same(marks[0]?.slices, [tp(one(spans, 'prefill_forward').spanId)], 'the prefill: the decode loop is still open, so not exported')
})

t.test("a carrier's links become thread span links with their reason, and travel on", async (t) => {
  const s = await tracedSession(t, {}, { role: 'tokenizer' })
  const link = { traceparent: tp('1111111111111111'), reason: 'resumed_from', process: 'worker-0-1', pid: 4242 }
  const bad = { traceparent: 'not-a-traceparent', reason: 'resumed_from' }
  const read = tracing.readCarrier(JSON.stringify(carrier([link, bad as tracing.CarrierLink])))
  t.same(read?.links, [link], 'a malformed link is left out')
  tracing.reqStart('r.1', read)
  tracing.reqStart('plain', carrier())
  t.same(tracing.getPropagateContext('r.1')?.links, [link], 'the next process gets them')
  t.equal(tracing.getPropagateContext('plain')?.links, undefined, 'a request without links passes none')
  tracing.reqFinish('r.1')
  tracing.reqFinish('plain')
  const spans = await s.finish()
  const thread = startsWith(spans, 'Tokenizer').find((x) => x.attributes['spanserve.request.id'] === 'r.1')!
  t.same(thread.links, [{ traceId, spanId: '1111111111111111', attributes: { 'spanserve.link.reason': 'resumed_from', 'spanserve.link.process': 'worker-0-1', 'spanserve.link.process_pid': 4242 } }])
  t.same(startsWith(spans, 'Tokenizer').find((x) => x.attributes['spanserve.request.id'] === 'plain')!.links, [])
})
