/**
 * Tracing offloaded to a worker thread (the worker process's mode): the calls recorded on the main
 * thread come out as the same spans, with the main thread's timestamps, and the thread's figures
 * (open contexts, dropped spans) reach the main thread.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tracing from '../../src/tracing/index.ts'
import { tracingOptions } from './fixtures/harness.ts'

const carrierOf = (traceId: string, spanId: string): tracing.TraceCarrier => tracing.makeCarrier({ traceId, spanId, traceFlags: 1 })

t.test('calls recorded on the main thread become spans in the tracing thread', async (t) => {
  const filePath = join(t.testdir(), 'trace.jsonl')
  await tracing.initTracing(tracingOptions({ exporter: 'file', filePath, level: 3 }), { role: 'worker', tpRank: 0, dpRank: 1 }, { offload: true })
  t.teardown(() => tracing.shutdownTracing())
  const traceId = 'a'.repeat(32)
  const t0 = tracing.nowNs()
  tracing.reqStart('w1', carrierOf(traceId, 'b'.repeat(16)))
  tracing.reqStart('w2', carrierOf(traceId, 'c'.repeat(16)))
  tracing.batchSlice(['w1'], tracing.SLICE.prefillForward, t0 + 1_000, t0 + 2_000, { 'spanserve.prefill.tokens': 4 }, 1)
  for (let s = 0; s < 3; s++) tracing.batchSlice(['w1', 'w2'], tracing.SLICE.decodeForward, t0 + 10_000 * (s + 1), t0 + 10_000 * (s + 1) + 500, tracing.batchAttributes(2, s), 3)
  t.equal(tracing.getPropagateContext('w1'), null, 'contexts live in the thread: none to pass on from here')
  await tracing.flushTracing()
  t.equal(tracing.liveRequestCount(), 2, 'the thread reports its open request contexts')
  tracing.reqFinish('w1')
  tracing.reqFinish('w2', { error: 'lost' })
  await tracing.flushTracing()
  t.equal(tracing.liveRequestCount(), 0)
  t.equal(tracing.droppedSpans(), 0)
  await tracing.shutdownTracing()
  t.notOk(tracing.isTracingEnabled())

  const spans: any[] = []
  for (const line of readFileSync(filePath, 'utf8').split('\n').filter(Boolean)) {
    for (const rs of JSON.parse(line).resourceSpans) {
      t.ok(rs.resource.attributes.some((a: any) => a.key === 'spanserve.process.role' && a.value.stringValue === 'worker'))
      for (const ss of rs.scopeSpans) spans.push(...ss.spans)
    }
  }
  const named = (n: string) => spans.filter((s) => s.name === n)
  t.equal(spans.filter((s) => s.name.startsWith('Worker [TP 0] [DP 1] [')).length, 2, 'one thread span per request, labelled with the ranks')
  t.equal(named(tracing.SLICE.decodeForward).length, 6, 'a decode slice per request per step at level 3')
  const prefill = named(tracing.SLICE.prefillForward)[0]
  t.equal(BigInt(prefill.startTimeUnixNano), BigInt(Math.round(t0 + 1_000)), "the main thread's timestamps, not the thread's")
  t.equal(BigInt(prefill.endTimeUnixNano), BigInt(Math.round(t0 + 2_000)))
  t.ok(
    spans.every((s) => s.traceId === traceId),
    "every span in the caller's trace",
  )
  const w2thread = spans.find((s) => s.name.startsWith('Worker') && s.parentSpanId === 'c'.repeat(16))
  t.equal(w2thread.status.code, 2, 'an error finish marks the thread span')
})

t.test('a tracing thread that dies turns tracing off in its process, with one warning', async (t) => {
  const warnings: string[] = []
  await tracing.initTracing(tracingOptions({ exporter: 'console' }), { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true, log: { warn: (_o, msg) => warnings.push(msg) } })
  t.teardown(() => tracing.shutdownTracing())
  t.ok(tracing.isTracingEnabled())
  // White box: end the thread as a crash would.
  const { runtime } = await import('../../src/tracing/runtime.ts')
  await (runtime.offload as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate()
  await new Promise((r) => setTimeout(r, 50))
  t.notOk(tracing.isTracingEnabled(), 'tracing is off')
  t.same(warnings, ['tracing: the tracing thread failed; this process records no more spans'])
  tracing.reqStart('x', null, { root: true })
  tracing.batchSlice(['x'], tracing.SLICE.decodeForward, 1, 2)
  t.equal(tracing.liveRequestCount(), 0, 'calls after the failure record nothing')
})

t.test('a tracing thread far behind costs slices, counted as dropped, never request starts or ends', async (t) => {
  const filePath = join(t.testdir(), 'trace.jsonl')
  await tracing.initTracing(tracingOptions({ exporter: 'file', filePath, level: 3, maxQueueSize: 100_000 }), { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true })
  t.teardown(() => tracing.shutdownTracing())
  const traceId = 'd'.repeat(32)
  tracing.reqStart('busy', carrierOf(traceId, 'e'.repeat(16)))
  tracing.reqStart('late', carrierOf(traceId, 'f'.repeat(16)))
  // One batch that keeps the thread busy (a span per call) ...
  const t0 = tracing.nowNs()
  for (let i = 0; i < 30_000; i++) tracing.batchSlice(['busy'], tracing.SLICE.decodeForward, t0 + i, t0 + i + 1, undefined, 3)
  // ... while the main thread hands over one small batch per turn, far more than it may be behind.
  const turns = 200
  for (let i = 0; i < turns; i++) {
    tracing.batchSlice(['late'], tracing.SLICE.decodeForward, t0 + i, t0 + i + 1, undefined, 3)
    await new Promise((r) => setImmediate(r))
  }
  tracing.reqFinish('busy')
  tracing.reqFinish('late')
  await tracing.flushTracing()
  const dropped = tracing.droppedSpans()
  t.ok(dropped > 0, `slices were shed (${dropped})`)
  t.equal(tracing.liveRequestCount(), 0, 'every request start and finish reached the thread: no context left open')
  await tracing.shutdownTracing()
  let slices = 0
  let threads = 0
  for (const line of readFileSync(filePath, 'utf8').split('\n').filter(Boolean)) {
    for (const rs of JSON.parse(line).resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          if (s.name === tracing.SLICE.decodeForward) slices++
          else if (s.name.startsWith('Worker')) threads++
        }
      }
    }
  }
  t.equal(threads, 2, 'both thread spans were exported, ended')
  t.equal(slices + dropped, 30_000 + turns, 'every slice was either exported or counted as dropped')
})

t.test('a level change reaches the tracing thread in order with the calls recorded before it', async (t) => {
  const filePath = join(t.testdir(), 'trace.jsonl')
  await tracing.initTracing(tracingOptions({ exporter: 'file', filePath, level: 3 }), { role: 'worker', tpRank: 0, dpRank: 0 }, { offload: true })
  t.teardown(() => tracing.shutdownTracing())
  tracing.reqStart('lv', carrierOf('1'.repeat(32), '2'.repeat(16)))
  const t0 = tracing.nowNs()
  // Same turn of the event loop: the first step is recorded at level 3, the next two below it.
  tracing.batchSlice(['lv'], tracing.SLICES.decodeForward, t0, t0 + 100)
  tracing.setLevel(2)
  tracing.batchSlice(['lv'], tracing.SLICES.decodeForward, t0 + 200, t0 + 300)
  tracing.batchSlice(['lv'], tracing.SLICES.decodeForward, t0 + 400, t0 + 500)
  tracing.reqFinish('lv')
  await tracing.flushTracing()
  await tracing.shutdownTracing()
  const names: string[] = []
  for (const line of readFileSync(filePath, 'utf8').split('\n').filter(Boolean)) {
    for (const rs of JSON.parse(line).resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) names.push(s.name)
  }
  t.equal(names.filter((n) => n === tracing.SLICE.decodeForward).length, 1, 'one decode_forward, recorded before the change')
  const loops = names.filter((n) => n === tracing.SLICE.decodeLoop)
  t.equal(loops.length, 1, 'the steps after the change fold into one decode_loop')
})
