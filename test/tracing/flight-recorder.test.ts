/**
 * The flight recorder (--trace-flight-recorder): the ring itself (window, cap, flush by trace or
 * all), then in a traced process over the real OTLP wire: the detail above --trace-level is held, not
 * exported, and leaves on a dump or with a tail-sampling keep, in the worker's tracing thread too.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import * as tracing from '../../src/tracing/index.ts'
import type { SpanContext } from '@opentelemetry/api'
import { BYTES_PER_LATE_SLICE, BYTES_PER_SPAN, FlightRecorder, markDetail } from '../../src/tracing/flight-recorder.ts'
import { SliceBatch } from '../../src/tracing/finished-slice.ts'
import { HeldTraces } from '../../src/tracing/held-traces.ts'
import type { SliceSink, TailKeepOptions } from '../../src/tracing/types.ts'
import { parseConfig } from '../../src/config/parse.ts'
import { tracingOptions as fromConfig } from '../../src/config/tracing.ts'
import { tracedSession } from './fixtures/harness.ts'

const hex = (n: number) => randomBytes(n).toString('hex')
const carrierOf = (traceId: string): tracing.TraceCarrier => tracing.makeCarrier({ traceId, spanId: hex(8), traceFlags: 1 })
const KEEP: TailKeepOptions = { policies: ['failed'], ttftMs: 0, itlP99Ms: 0, e2eMs: 0, bufferSpans: 1000, verdictTimeoutMs: 60_000 }

/** A recorder between two in-memory exports: what passes at once, and what its flushes send. */
function ring(t: Test, opts: { windowSeconds: number; maxSpans: number }) {
  const passed = new InMemorySpanExporter()
  const sent = new InMemorySpanExporter()
  const recorder = new FlightRecorder(new SimpleSpanProcessor(passed), new SimpleSpanProcessor(sent), opts)
  t.teardown(() => recorder.shutdown())
  const sink = { processor: recorder, resource: resourceFromAttributes({}), scope: { name: 'test' }, valueLengthLimit: 4096 }
  /** One decode step's slice of trace `traceId`: detail (held) or not (passed on). */
  const step = (traceId: string, detail = true) => {
    const parent = { traceId, spanId: hex(8), traceFlags: 1 }
    const batch = new SliceBatch(sink, 'decode_forward', [1, 0], [1, 1000], { 'spanserve.batch.size': 1 })
    if (detail) batch.recordDetail(parent, undefined)
    else batch.record(parent, undefined)
  }
  const traces = (spans: ReadableSpan[]) => spans.map((s) => s.spanContext().traceId)
  return { recorder, step, passed: () => traces(passed.getFinishedSpans()), sent: () => traces(sent.getFinishedSpans()) }
}

t.test('ring: detail is held by trace, the rest passes; a flush by trace id sends only those, a flush of all the rest', async (t) => {
  const r = ring(t, { windowSeconds: 30, maxSpans: 100 })
  const [a, b, c] = [hex(16), hex(16), hex(16)]
  r.step(a)
  r.step(a)
  r.step(b)
  r.step(c)
  r.step(c, false)
  t.same(r.passed(), [c], 'not detail: passed on at once')
  t.same(r.recorder.stats(), { spans: 4, bytes: 4 * BYTES_PER_LATE_SLICE, dropped: 0 })
  t.same(r.recorder.flush([a, hex(16)]), { traces: 1, spans: 2 }, 'an unknown id sends nothing')
  t.same(r.sent(), [a, a])
  t.same(r.recorder.flush(), { traces: 2, spans: 2 })
  t.same(r.sent().slice(2).sort(), [b, c].sort())
  t.same(r.recorder.stats().spans, 0, 'nothing held after a flush')
  t.same(r.recorder.flush(), { traces: 0, spans: 0 })
})

t.test('ring: a trace is let go a window after its last span, uncounted; a span keeps its trace young', async (t) => {
  const r = ring(t, { windowSeconds: 1, maxSpans: 100 })
  const [old, busy] = [hex(16), hex(16)]
  r.step(old)
  r.step(busy)
  const t0 = performance.now()
  await new Promise((res) => setTimeout(res, 20))
  r.step(busy)
  r.recorder.expire(t0 + 1005)
  t.same(r.recorder.stats(), { spans: 2, bytes: 2 * BYTES_PER_LATE_SLICE, dropped: 0 }, 'the old trace went; the busy one stayed whole')
  r.recorder.expire(performance.now() + 1001)
  t.equal(r.recorder.stats().spans, 0)
  t.same(r.recorder.flush(), { traces: 0, spans: 0 })
})

t.test('ring: past the span cap the least recently touched trace is dropped whole and counted', async (t) => {
  const r = ring(t, { windowSeconds: 30, maxSpans: 3 })
  const [a, b, c] = [hex(16), hex(16), hex(16)]
  r.step(a)
  r.step(a)
  r.step(b)
  r.step(c)
  t.same(r.recorder.stats(), { spans: 2, bytes: 2 * BYTES_PER_LATE_SLICE, dropped: 2 })
  r.recorder.flush()
  t.same(r.sent().sort(), [b, c].sort())
})

t.test('compact records: a held batch slice leaves as the slice made at once would, in the order held, and is made only if it leaves', async (t) => {
  const direct = new InMemorySpanExporter()
  const sent = new InMemorySpanExporter()
  const recorder = new FlightRecorder(new SimpleSpanProcessor(new InMemorySpanExporter()), new SimpleSpanProcessor(sent), { windowSeconds: 30, maxSpans: 100 })
  t.teardown(() => recorder.shutdown())
  const resource = resourceFromAttributes({ 'service.name': 'x' })
  const scope = { name: 'test' }
  const held = { processor: recorder, resource, scope, valueLengthLimit: 8 }
  const now = { processor: new SimpleSpanProcessor(direct), resource, scope, valueLengthLimit: 8 }
  const id = hex(16)
  const parent = { traceId: id, spanId: hex(8), traceFlags: 1 }
  const prev = { traceId: id, spanId: hex(8), traceFlags: 1 }
  const attrs = { 'spanserve.batch.size': 2, 'spanserve.x': 'a long value' }
  const made = (sink: SliceSink) => new SliceBatch(sink, 'decode_forward', [5, 10], [5, 2000], attrs)
  made(held).recordDetail(parent, prev)
  // A span held whole between two compact ones keeps its place.
  const whole = new SliceBatch(now, 'whole', [6, 0], [6, 1], {})
  const wholeSpan = whole.slice(parent, undefined)
  markDetail(wholeSpan)
  recorder.onEnd(wholeSpan)
  made(held).recordDetail(parent, undefined)
  made(now).record(parent, prev)
  t.same(recorder.stats(), { spans: 3, bytes: 2 * BYTES_PER_LATE_SLICE + BYTES_PER_SPAN, dropped: 0 })
  t.same(recorder.flush(), { traces: 1, spans: 3 })
  const out = sent.getFinishedSpans()
  t.same(
    out.map((s) => s.name),
    ['decode_forward', 'whole', 'decode_forward'],
  )
  const [a, , c] = out as [ReadableSpan, ReadableSpan, ReadableSpan]
  const b = direct.getFinishedSpans()[0]!
  const shape = (s: ReadableSpan) => ({
    name: s.name,
    kind: s.kind,
    traceId: s.spanContext().traceId,
    traceFlags: s.spanContext().traceFlags,
    parent: s.parentSpanContext,
    start: s.startTime,
    end: s.endTime,
    duration: s.duration,
    attributes: s.attributes,
    links: s.links,
    status: s.status,
    events: s.events,
    resource: s.resource,
    scope: s.instrumentationScope,
  })
  t.same(shape(a), shape(b), 'the same span as one made at once')
  t.same(a.attributes, { 'spanserve.batch.size': 2, 'spanserve.x': 'a long v' }, 'values cut to the limit')
  t.same(c.links, [], 'no link without a previous slice')
  t.not(a.spanContext().spanId, c.spanContext().spanId, 'each its own span id')
  t.match(a.spanContext().spanId, /^[0-9a-f]{16}$/)

  // Let go by the window or the cap: never made.
  let madeCount = 0
  class Counting extends SliceBatch {
    override slice(p: SpanContext, l: SpanContext | undefined) {
      madeCount++
      return super.slice(p, l)
    }
  }
  const small = new FlightRecorder(new SimpleSpanProcessor(new InMemorySpanExporter()), new SimpleSpanProcessor(sent), { windowSeconds: 1, maxSpans: 2 })
  t.teardown(() => small.shutdown())
  const sink = { ...held, processor: small }
  for (const traceId of [hex(16), hex(16), hex(16)]) new Counting(sink, 'decode_forward', [1, 0], [1, 1], {}).recordDetail({ traceId, spanId: hex(8), traceFlags: 1 }, undefined)
  t.same(small.stats().dropped, 1, 'past the cap')
  small.expire(performance.now() + 1001)
  t.same(small.stats().spans, 0, 'past the window')
  t.equal(madeCount, 0, 'no span was made for a slice let go')
})

t.test('held traces with slack: a touch renews the time at once and the place only past the slack; the window stays exact', async (t) => {
  const held = new HeldTraces(true, 100)
  const span = { spanContext: () => ({}) } as unknown as ReadableSpan
  held.add('a', span, 0)
  held.add('b', span, 10)
  held.add('a', span, 50) // renewed, not moved: a is still first in order
  t.same(held.ids(), ['a', 'b'])
  held.dropUntil(20)
  t.same(held.ids(), ['a'], 'b went; a, touched since, stayed though placed before b')
  held.add('a', span, 200) // past the slack: moved
  held.add('c', span, 210)
  held.dropUntil(205)
  t.same(held.ids(), ['c'])
  t.equal(held.count, 1)
})

t.test('the flags: off by default, the cap defaults to 200000 spans', async (t) => {
  t.equal(fromConfig(parseConfig([]).config).flightRecorder, null)
  t.same(fromConfig(parseConfig(['--trace-flight-recorder', '30']).config).flightRecorder, { windowSeconds: 30, maxSpans: 200_000 })
  t.same(fromConfig(parseConfig(['--trace-flight-recorder', '5', '--trace-flight-recorder-spans', '100']).config).flightRecorder, { windowSeconds: 5, maxSpans: 100 })
})

/** A request through a scheduler-like process: one top-level slice, then `steps` decode steps. */
function decode(rid: string, traceId: string, steps: number): void {
  tracing.reqStart(rid, carrierOf(traceId))
  tracing.sliceStart(rid, tracing.SLICES.prefillForward)
  tracing.sliceEnd(rid, tracing.SLICES.prefillForward)
  let ts = tracing.nowNs()
  for (let i = 0; i < steps; i++, ts += 1000) tracing.batchSlice([rid], tracing.SLICES.decodeForward, ts, ts + 1000, tracing.batchAttributes(1, i))
  tracing.reqFinish(rid)
}

const names = (spans: { name: string }[]) => spans.map((s) => s.name.split(' ')[0]).sort()

t.test('process at --trace-level 1: the decode steps are held, the export is as without the recorder; a dump sends them', async (t) => {
  const s = await tracedSession(t, { level: 1, flightRecorder: { windowSeconds: 30, maxSpans: 1000 } }, { role: 'scheduler', dpRank: 0 })
  t.equal(tracing.getLevel(), 1, 'the level says what is exported')
  const id = hex(16)
  decode('r', id, 5)
  await tracing.flushTracing()
  await s.receiver.waitForSpans((all) => all.some((x) => x.name === 'decode_loop'), 5000)
  t.same(names(s.receiver.spans), ['Scheduler', 'decode_loop', 'prefill_forward'], 'as at level 1')
  t.equal(tracing.flightRecorderStats()?.spans, 5)
  t.same(await tracing.dumpFlightRecorder(), { traces: 1, spans: 5 })
  const spans = await s.finish()
  const steps = spans.filter((x) => x.name === 'decode_forward')
  t.equal(steps.length, 5, 'the dump exported every step')
  const thread = spans.find((x) => x.name.startsWith('Scheduler'))!
  t.ok(
    steps.every((x) => x.traceId === id && x.parentSpanId === thread.spanId),
    'under their thread span',
  )
})

t.test('child with --trace-keep: a kept trace exports its held detail, a dropped one does not', async (t) => {
  const s = await tracedSession(t, { level: 1, keep: KEEP, flightRecorder: { windowSeconds: 30, maxSpans: 1000 } }, { role: 'scheduler', dpRank: 0 })
  const [kept, dropped] = [hex(16), hex(16)]
  decode('k', kept, 3)
  decode('d', dropped, 3)
  tracing.applyTraceVerdicts([kept], [dropped])
  await tracing.flushTracing()
  t.equal(tracing.flightRecorderStats()?.spans, 3, "the dropped trace's detail stays in the window")
  const spans = await s.finish()
  t.same(names(spans.filter((x) => x.traceId === kept)), ['Scheduler', 'decode_forward', 'decode_forward', 'decode_forward', 'decode_loop', 'prefill_forward'])
  t.same(
    spans.filter((x) => x.traceId === dropped),
    [],
  )
})

t.test('worker (tracing thread): the thread holds the detail and reports its size; a dump reaches it', async (t) => {
  const s = await tracedSession(t, { level: 2, flightRecorder: { windowSeconds: 30, maxSpans: 1000 } }, { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true })
  const id = hex(16)
  tracing.reqStart('w', carrierOf(id))
  const t0 = tracing.nowNs()
  tracing.batchSlice(['w'], tracing.SLICES.decodeForward, t0, t0 + 1000, tracing.batchAttributes(1, 0))
  tracing.batchSlice(['w'], tracing.SLICES.decodeForward, t0 + 1000, t0 + 2000, tracing.batchAttributes(1, 1))
  tracing.reqFinish('w')
  await tracing.flushTracing()
  t.same(tracing.flightRecorderStats(), { spans: 2, bytes: 2 * BYTES_PER_LATE_SLICE, dropped: 0 }, 'as the thread last reported')
  t.same(await tracing.dumpFlightRecorder(), { traces: 1, spans: 2 })
  const spans = await s.finish()
  t.same(names(spans), ['Worker', 'decode_forward', 'decode_forward', 'decode_loop'])
})

t.test('without the recorder nothing changes: no stats, a dump sends nothing', async (t) => {
  const s = await tracedSession(t, { level: 1 }, { role: 'scheduler', dpRank: 0 })
  decode('r', hex(16), 2)
  t.equal(tracing.flightRecorderStats(), null)
  t.same(await tracing.dumpFlightRecorder(), { traces: 0, spans: 0 })
  t.same(names(await s.finish()), ['Scheduler', 'decode_loop', 'prefill_forward'])
})
