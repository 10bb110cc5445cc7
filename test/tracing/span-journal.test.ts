/**
 * The span journal (src/tracing/span-journal.ts) and its reader (orphan-spans.ts): what a process
 * queued for export is on disk as soon as the span ends; what a "killed" process (its journal left
 * open, never closed) had not exported is read back past the watermark and rebuilt into the same
 * spans, over the real OTLP wire; the files stay bounded; a torn last record costs only itself; and
 * tracing off, or the server's own process, journals nothing.
 */
import t, { type Test } from 'tap'
import { appendFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { BasicTracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base'
import * as tracing from '../../src/tracing/index.ts'
import { readJournal } from '../../src/tracing/orphan-spans.ts'
import { exportOrphanSpans } from '../../src/tracing/setup.ts'
import { heldJournalKey, journalKey, SPAN_JOURNAL_ENV, SpanJournal } from '../../src/tracing/span-journal.ts'
import { childKey } from '../../src/server/supervisor/children.ts'
import type { ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { tracedSession, tracingOptions } from './fixtures/harness.ts'

/** Sets an environment variable for the test only. */
function withEnv(t: Test, name: string, value: string): void {
  const before = process.env[name]
  process.env[name] = value
  t.teardown(() => {
    if (before === undefined) delete process.env[name]
    else process.env[name] = before
  })
}

const carrierOf = (traceId: string, spanId: string, prev?: string): tracing.TraceCarrier =>
  tracing.makeCarrier({ traceId, spanId, traceFlags: 1 }, prev === undefined ? undefined : { traceId, spanId: prev, traceFlags: 1 })

/** What a span is on the wire, less the transport that carried it. */
const wire = (s: ReceivedSpan) => ({ ...s, via: undefined })

t.test("a killed process's queued spans are read back whole, and exported as the process would have", async (t) => {
  const dir = t.testdir()
  withEnv(t, SPAN_JOURNAL_ENV, dir)
  // Nothing leaves the queue on its own while the test runs: the journal is all there is.
  withEnv(t, 'OTEL_BSP_SCHEDULE_DELAY', '600000')
  const session = await tracedSession(t, { level: 3 }, { role: 'scheduler', dpRank: 1 })
  const traceId = 'ab'.repeat(16)
  tracing.reqStart('r1', carrierOf(traceId, 'c'.repeat(16), 'd'.repeat(16)), { attributes: { 'spanserve.request.id': 'r1' } })
  tracing.sliceStart('r1', tracing.SLICES.prefillWaiting, { attributes: { 'spanserve.queue.ms': 1.5, tags: ['a', 'b'] } })
  tracing.event('r1', 'first_token', { n: 1 })
  tracing.sliceEnd('r1', tracing.SLICES.prefillWaiting)
  const t0 = tracing.nowNs()
  for (let s = 0; s < 5; s++) tracing.batchSlice(['r1'], tracing.SLICE.decodeForward, t0 + s * 1000, t0 + s * 1000 + 500, tracing.batchAttributes(1, s), 3)
  tracing.reqFinish('r1', { error: 'lost with its process' })

  await runEnded()
  // The "kill": the journal is read while its writer still holds it open, as the server finds it.
  const key = journalKey({ role: 'scheduler', dpRank: 1 })!
  const killed = await readJournal(dir, key, process.pid)
  t.equal(killed.header?.key, 'scheduler-1', 'the journal names its process')
  t.equal(killed.header?.pid, process.pid, 'and its pid')
  t.equal(killed.header?.resource['spanserve.process.role'], 'scheduler', 'and carries its resource')
  t.equal(killed.watermark, 0, 'nothing exported yet')
  t.equal(killed.spans.length, 7, 'every ended span is there: a wait slice, 5 decode slices, the thread span')

  await tracing.flushTracing()
  const live = await session.receiver.waitForSpans((all) => all.length >= 7)
  t.equal(live.length, 7, 'the live export sent the same 7')
  const after = await readJournal(dir, key, process.pid)
  t.equal(after.spans.length, 0, 'once exported, nothing is left past the watermark')
  t.equal(after.watermark, 7, 'the watermark says so')

  // Exported by "the server" now: the same spans arrive a second time, field for field.
  await exportOrphanSpans(killed.spans)
  const all = await session.receiver.waitForSpans((all) => all.length >= 14)
  const bySpan = new Map(live.map((s) => [s.spanId, s]))
  for (const again of all.slice(7)) t.same(wire(again), wire(bySpan.get(again.spanId)!), `${again.name} rebuilt exactly`)
  const thread = all.slice(7).find((s) => s.name.startsWith('Scheduler'))!
  t.equal(thread.status.code, 2, 'status kept')
  t.equal(thread.links.length, 0, 'a thread span without carrier links has none')
  const wait = all.slice(7).find((s) => s.name === 'prefill_waiting')!
  t.same(
    wait.events.map((e) => e.name),
    ['first_token'],
    'events kept',
  )
  t.equal(wait.links[0]?.spanId, 'd'.repeat(16), "links kept (to the sender's slice)")
  t.equal(wait.resource['process.pid'], process.pid, "with the process's own resource")

  await session.finish()
  t.same(readdirSync(dir), [], 'a clean shutdown deletes the journal')
})

/** Spans from the real SDK, each handed to `onEnd` as it ends. */
function spanSource(onEnd: (span: ReadableSpan) => void): (n: number) => void {
  const processor: SpanProcessor = { onStart: () => undefined, onEnd, forceFlush: async () => undefined, shutdown: async () => undefined }
  const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer('journal-test')
  return (n) => {
    for (let i = 0; i < n; i++) tracer.startSpan('step', { attributes: { i, text: 'x'.repeat(100) } }).end()
  }
}

/** Records are written at the end of the synchronous run that ends the spans. */
const runEnded = () => new Promise<void>((resolve) => setImmediate(resolve))

const sizeOf = (dir: string) => readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0)

t.test('the journal stays bounded: segments go once exported, and past the cap spans are counted, not written', async (t) => {
  const dir = t.testdir()
  const journal = SpanJournal.open(dir, 'worker-0-0', { 'service.name': 'x' }, { warn: () => undefined }, { segmentBytes: 4096, maxBytes: 16384 })!
  t.teardown(() => journal.close())
  const emit = spanSource((s) => journal.append(s))

  emit(500)
  await runEnded()
  t.ok(sizeOf(dir) <= 16384, `never past the cap: ${sizeOf(dir)} bytes in ${readdirSync(dir).length} segments`)
  t.ok(journal.dropped > 0, `spans past it counted: ${journal.dropped}`)
  const kept = (await readJournal(dir, 'worker-0-0', process.pid)).spans.length
  t.equal(kept + journal.dropped, 500, 'every span is either in the journal or counted')

  // The queue drains in two exports; the second answers first.
  const a = journal.handed(300)
  const b = journal.handed(200)
  journal.settled(b)
  t.equal((await readJournal(dir, 'worker-0-0', process.pid)).spans.length, kept, 'an export answered out of order moves nothing: an older one is still out')
  journal.settled(a)
  t.equal((await readJournal(dir, 'worker-0-0', process.pid)).spans.length, 0, 'both answered: nothing left to recover')
  t.equal(readdirSync(dir).length, 1, 'and the older segments are deleted')

  // Steady state: a span queued and exported at a time, for a long while.
  for (let i = 0; i < 2000; i++) {
    emit(1)
    journal.settled(journal.handed(1))
  }
  t.ok(sizeOf(dir) <= 4096 + 512, `a journal whose spans keep being exported stays one segment: ${sizeOf(dir)} bytes`)
  emit(3)
  await runEnded()
  t.equal((await readJournal(dir, 'worker-0-0', process.pid)).spans.length, 3, 'and holds what is queued now')
})

t.test("a held journal (tail sampling's hold) keeps the newest spans in its bound, and lets quiet segments go", async (t) => {
  const dir = t.testdir()
  const key = heldJournalKey('worker-0-0')
  const journal = SpanJournal.open(dir, key, {}, { warn: () => undefined }, { segmentBytes: 4096, maxBytes: 16384, expireMs: 60_000 })!
  t.teardown(() => journal.close())
  const emit = spanSource((s) => journal.append(s))
  emit(500)
  await runEnded()
  t.ok(sizeOf(dir) <= 16384, `never past the cap: ${sizeOf(dir)} bytes`)
  const read = await readJournal(dir, key, process.pid)
  t.ok(read.spans.length > 0 && journal.dropped > 0, `${read.spans.length} held, ${journal.dropped} let go`)
  t.equal(read.spans.length + journal.dropped, 500, 'every span is either in the journal or counted')
  t.equal(read.spans.at(-1)?.attributes.i, 499, 'the oldest went, not the newest')
  t.equal((await readJournal(dir, 'worker-0-0', process.pid)).spans.length, 0, "apart from the queue's journal")

  // Segments quiet past expireMs go when the next one opens, without counting: their verdicts are long past.
  const quick = SpanJournal.open(dir, heldJournalKey('tokenizer'), {}, { warn: () => undefined }, { segmentBytes: 4096, maxBytes: 1 << 20, expireMs: 50 })!
  t.teardown(() => quick.close())
  const emitQuick = spanSource((s) => quick.append(s))
  emitQuick(60)
  await new Promise((r) => setTimeout(r, 80))
  emitQuick(30)
  await runEnded()
  const left = (await readJournal(dir, heldJournalKey('tokenizer'), process.pid)).spans
  t.ok(left.length < 90 && left.length >= 30, `the quiet segments went: ${left.length} of 90 left`)
  t.equal(quick.dropped, 0, 'and none counted as lost')
})

t.test('a torn last record costs that record only', async (t) => {
  const dir = t.testdir()
  const journal = SpanJournal.open(dir, 'tokenizer', {}, { warn: () => undefined })!
  t.teardown(() => journal.close())
  spanSource((s) => journal.append(s))(4)
  await runEnded()
  const [file] = readdirSync(dir)
  // A write cut by the kill: a length that promises more than the file holds.
  appendFileSync(join(dir, file!), Buffer.from([200, 0, 0, 0, 2, 1, 2, 3]))
  const read = await readJournal(dir, 'tokenizer', process.pid)
  t.equal(read.spans.length, 4, 'the records before it stand')
})

t.test('no journal with tracing off, nor for the server itself', async (t) => {
  const dir = t.testdir()
  withEnv(t, SPAN_JOURNAL_ENV, dir)
  await tracing.initTracing(tracingOptions({ enabled: false }), { role: 'worker', dpRank: 0, tpRank: 0 })
  t.same(readdirSync(dir), [], 'tracing off: no file')
  await tracing.initTracing(tracingOptions({ exporter: 'console' }), { role: 'server' }, { consoleWrite: () => undefined })
  t.teardown(() => tracing.shutdownTracing())
  t.same(readdirSync(dir), [], 'the server: no file (no one would read it)')
})

t.test("a journal's key is the launcher's name for the process", async (t) => {
  for (const [who, spec] of [
    [{ role: 'tokenizer' }, { role: 'tokenizer', dpRank: 0, tpRank: 0 }],
    [
      { role: 'scheduler', dpRank: 2 },
      { role: 'scheduler', dpRank: 2, tpRank: 0 },
    ],
    [
      { role: 'worker', dpRank: 1, tpRank: 3 },
      { role: 'worker', dpRank: 1, tpRank: 3 },
    ],
  ] as const) {
    t.equal(journalKey(who), childKey(spec), childKey(spec))
  }
})
