/**
 * Tail sampling (--trace-keep), process by process, over the real OTLP wire: the server decides at a
 * trace's end and tells its children; a child holds a trace's spans until then, bounded; the
 * policies themselves; and the flags.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import * as tracing from '../../src/tracing/index.ts'
import { p99 } from '../../src/tracing/tail-decider.ts'
import type { TailKeepOptions } from '../../src/tracing/types.ts'
import { keptRequestTrace } from '../../src/server/engine-client/request-trace.ts'
import { parseConfig } from '../../src/config/parse.ts'
import { tracingOptions as fromConfig } from '../../src/config/tracing.ts'
import { tracedSession } from './fixtures/harness.ts'
import { readdirSync } from 'node:fs'
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { heldJournalKey, SpanJournal } from '../../src/tracing/span-journal.ts'
import { recoverOrphanSpans } from '../../src/tracing/orphan-spans.ts'

const KEEP: TailKeepOptions = { policies: ['failed', 'resumed', 'slow'], ttftMs: 2000, itlP99Ms: 200, e2eMs: 10_000, bufferSpans: 1000, verdictTimeoutMs: 60_000 }
const hex = (n: number) => randomBytes(n).toString('hex')
const carrierOf = (traceId: string): tracing.TraceCarrier => tracing.makeCarrier({ traceId, spanId: hex(8), traceFlags: 1 })
const settle = () => new Promise((r) => setTimeout(r, 300))

t.test('keepReason: failed, then resumed, then slow by TTFT, ITL p99 or end to end; 0 turns a measure off', async (t) => {
  const plain = { failed: false, resumed: false, ttftMs: 50, gapsMs: [10, 12, 9], e2eMs: 500 }
  t.equal(tracing.keepReason(KEEP, plain), undefined)
  t.equal(tracing.keepReason(KEEP, { ...plain, failed: true, resumed: true }), 'failed')
  t.equal(tracing.keepReason(KEEP, { ...plain, resumed: true }), 'resumed')
  t.equal(tracing.keepReason(KEEP, { ...plain, ttftMs: 2500 }), 'slow_ttft')
  t.equal(tracing.keepReason(KEEP, { ...plain, gapsMs: [10, 300] }), 'slow_itl')
  t.equal(tracing.keepReason(KEEP, { ...plain, e2eMs: 11_000 }), 'slow_e2e')
  t.equal(tracing.keepReason({ ...KEEP, e2eMs: 0 }, { ...plain, e2eMs: 11_000 }), undefined, '0: not this measure')
  t.equal(tracing.keepReason({ ...KEEP, policies: ['slow'] }, { ...plain, failed: true }), undefined, 'only the policies named')
  const gaps = Array.from({ length: 200 }, (_, i) => i + 1)
  t.equal(p99(gaps), 198, 'nearest rank')
  t.equal(p99([5]), 5)
})

t.test('the flags: off by default, defaults documented, an unknown policy refused', async (t) => {
  t.equal(fromConfig(parseConfig([]).config).keep, null, 'empty --trace-keep: no tail sampling')
  const keep = fromConfig(parseConfig(['--trace-keep', 'failed,slow', '--trace-keep-e2e-ms', '500']).config).keep
  t.same(keep, { policies: ['failed', 'slow'], ttftMs: 2000, itlP99Ms: 200, e2eMs: 500, bufferSpans: 32768, verdictTimeoutMs: 60_000 })
  t.throws(() => parseConfig(['--trace-keep', 'failed,slwo']), /--trace-keep: expected a list of failed, resumed, slow, got "slwo"/)
})

t.test('server: a trace is decided when its last request ends; dropped ones never leave, kept ones leave whole, verdicts go out batched', async (t) => {
  const s = await tracedSession(t, { sampleRate: 0, keep: KEEP })
  const before = tracing.droppedSpans()
  const sent: { keep: string[]; drop: string[] }[] = []
  tracing.setTraceVerdictSink((keep, drop) => sent.push({ keep, drop }))
  const start = (rid: string) => {
    tracing.reqStart(rid, null, { root: true })
    tracing.sliceStart(rid, tracing.SLICES.apiServerDispatch)
    tracing.sliceEnd(rid, tracing.SLICES.apiServerDispatch)
    const id = tracing.getPropagateContext(rid)!.traceparent.split('-')[1]!
    tracing.tailRequestStarted(id)
    return id
  }
  const plain = start('plain')
  const failed = start('failed')
  t.equal(tracing.getPropagateContext('plain')!.traceparent.slice(-2), '01', 'recorded everywhere, whatever the head rate')
  // As GenerationRun ends a request: the reason (if any) on its root, then the root ends, after the verdict.
  keptRequestTrace('failed', failed, 'failed')
  tracing.reqFinish('failed', { error: 'grammar did not compile' })
  keptRequestTrace('plain', plain, undefined)
  tracing.reqFinish('plain')
  // A trace with no generation request (a 404's HTTP span, say) is decided when its top span ends.
  tracing.reqStart('no-request', null, { root: true })
  const errored = tracing.getPropagateContext('no-request')!.traceparent.split('-')[1]!
  tracing.reqFinish('no-request', { error: 'boom' })
  await tracing.flushTracing()
  t.same(sent, [{ keep: [failed, errored], drop: [plain] }], 'one message for all the verdicts')

  // A span of a decided trace that ends after its verdict follows it.
  const late = tracing.createThreadTracer('Late')
  late.reqStart('late-kept', carrierOf(failed))
  late.reqFinish('late-kept')
  late.reqStart('late-dropped', carrierOf(plain))
  late.reqFinish('late-dropped')
  await tracing.flushTracing()
  const spans = await s.finish()
  t.same(
    spans.filter((x) => x.traceId === plain).map((x) => x.name),
    [],
    'nothing of the dropped trace',
  )
  const kept = spans.filter((x) => x.traceId === failed)
  t.same(kept.map((x) => x.name.split(' ')[0]).sort(), ['Late', 'Server', 'api_server_dispatch', 'llm_request'], 'the kept trace whole, its late span too')
  t.equal(kept.find((x) => x.name === 'llm_request')!.attributes['spanserve.trace.kept_by'], 'failed', 'the root says why')
  t.ok(
    spans.some((x) => x.traceId === errored && x.name === 'llm_request'),
    'a failed top span keeps its trace',
  )
  t.equal(tracing.droppedSpans() - before, 0, 'a verdict to drop is no loss')
})

t.test("server: the head rate's share and a caller's sampled flag are kept without a policy", async (t) => {
  const s = await tracedSession(t, { sampleRate: 1, keep: KEEP })
  tracing.reqStart('head', null, { root: true })
  const id = tracing.getPropagateContext('head')!.traceparent.split('-')[1]!
  t.ok(tracing.isHeadSampled(id))
  tracing.reqFinish('head')
  const spans = await s.finish()
  t.ok(
    spans.some((x) => x.traceId === id && x.name === 'llm_request'),
    'exported',
  )
})

t.test('child: spans wait for the verdict; kept ones then leave, dropped ones never, unanswered ones expire counted', async (t) => {
  const warnings: string[] = []
  const s = await tracedSession(t, { keep: { ...KEEP, verdictTimeoutMs: 1000 } }, { role: 'tokenizer' }, { log: { warn: (_o, msg) => warnings.push(msg) } })
  const before = tracing.droppedSpans()
  const [a, b, c] = [hex(16), hex(16), hex(16)]
  for (const [rid, id] of [
    ['a', a],
    ['b', b],
    ['c', c],
  ] as const) {
    tracing.reqStart(rid, carrierOf(id))
    tracing.sliceStart(rid, tracing.SLICES.tokenize)
    tracing.sliceEnd(rid, tracing.SLICES.tokenize, { threadFinish: true })
  }
  await tracing.flushTracing()
  await settle()
  t.equal(s.receiver.spans.length, 0, 'held: nothing exported before a verdict')
  tracing.applyTraceVerdicts([a], [b])
  await tracing.flushTracing()
  await s.receiver.waitForSpans((all) => all.filter((x) => x.traceId === a).length === 2, 5000)
  // c never gets a verdict: dropped after the timeout, and counted.
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(tracing.droppedSpans() - before, 2, "c's two spans expired")
  t.equal(warnings.length, 1, 'and said so once')
  tracing.applyTraceVerdicts([c], [])
  await tracing.flushTracing()
  const spans = await s.finish()
  t.same([...new Set(spans.map((x) => x.traceId))], [a], 'only the kept trace')
})

t.test('child: past --trace-keep-buffer-spans the oldest trace is dropped and counted, with one warning', async (t) => {
  const warnings: string[] = []
  const s = await tracedSession(t, { keep: { ...KEEP, bufferSpans: 3 } }, { role: 'scheduler', dpRank: 0 }, { log: { warn: (_o, msg) => warnings.push(msg) } })
  const before = tracing.droppedSpans()
  const ids = [hex(16), hex(16), hex(16)]
  ids.forEach((id, i) => {
    tracing.reqStart(`r${i}`, carrierOf(id))
    tracing.sliceStart(`r${i}`, tracing.SLICES.prefillWaiting)
    tracing.sliceEnd(`r${i}`, tracing.SLICES.prefillWaiting, { threadFinish: true })
  })
  t.equal(tracing.droppedSpans() - before, 4, 'the two oldest traces, two spans each')
  t.equal(warnings.length, 1)
  t.match(warnings[0], /held for tail sampling/)
  tracing.applyTraceVerdicts(ids, [])
  const spans = await s.finish()
  t.same([...new Set(spans.map((x) => x.traceId))], [ids[2]], 'the newest survived')
})

t.test("server: a dead child's held spans join the server's hold and follow their traces' verdicts", async (t) => {
  const dir = t.testdir()
  const [kept, dropped, later] = [hex(16), hex(16), hex(16)]
  // The child's held journal as its death left it (never closed): one span of each trace.
  const journal = SpanJournal.open(dir, heldJournalKey('tokenizer'), { 'service.name': 'spanserve', 'spanserve.process.role': 'tokenizer' }, { warn: () => undefined }, { expireMs: 60_000 })!
  t.teardown(() => journal.close())
  const tracer = new BasicTracerProvider().getTracer('held')
  for (const id of [kept, dropped, later]) {
    const span = tracer.startSpan('tokenize', {}, trace.setSpanContext(ROOT_CONTEXT, { traceId: id, spanId: hex(8), traceFlags: 1 })) as unknown as ReadableSpan & { end(): void }
    span.end()
    journal.append(span)
  }
  await new Promise((r) => setImmediate(r))
  const s = await tracedSession(t, { keep: KEEP }, { role: 'server' })
  tracing.applyTraceVerdicts([kept], [dropped])
  t.equal(await recoverOrphanSpans(dir, 'tokenizer', process.pid), 3, 'all three taken into the hold')
  t.equal(readdirSync(dir).length, 0, 'and the journal deleted')
  await tracing.flushTracing()
  await s.receiver.waitForSpans((all) => all.some((x) => x.traceId === kept), 5000)
  t.notOk(
    s.receiver.spans.some((x) => x.traceId === later),
    'a trace not yet decided waits for its verdict',
  )
  tracing.applyTraceVerdicts([later], [])
  const spans = await s.finish()
  t.same(new Set(spans.map((x) => x.traceId)), new Set([kept, later]), 'kept traces get them; the dropped one does not')
  t.equal(spans[0]?.resource['spanserve.process.role'], 'tokenizer', "with the dead child's resource")
})

t.test('worker (tracing thread): the verdict reaches the thread after the calls recorded before it', async (t) => {
  const s = await tracedSession(t, { level: 3, keep: KEEP }, { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true })
  const before = tracing.droppedSpans()
  const [kept, dropped] = [hex(16), hex(16)]
  const t0 = tracing.nowNs()
  tracing.reqStart('k', carrierOf(kept))
  tracing.reqStart('d', carrierOf(dropped))
  tracing.batchSlice(['k', 'd'], tracing.SLICES.decodeForward, t0, t0 + 1000, tracing.batchAttributes(2, 0))
  tracing.reqFinish('k')
  tracing.reqFinish('d')
  tracing.applyTraceVerdicts([kept], [dropped])
  await tracing.flushTracing()
  const spans = await s.finish()
  t.same(spans.map((x) => x.name.split(' ')[0]).sort(), ['Worker', 'decode_forward'])
  t.ok(spans.every((x) => x.traceId === kept))
  t.equal(tracing.droppedSpans() - before, 0)
})
