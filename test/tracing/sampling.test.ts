import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { tracedSession } from './fixtures/harness.ts'

const UNSAMPLED = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
const SAMPLED = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

function fullRequest(tr: tracing.ThreadTracer | typeof tracing, rid: string): void {
  tr.sliceStart(rid, 'tokenize')
  tr.sliceEnd(rid, 'tokenize')
  tr.event(rid, 'first_token')
  tr.batchSlice([rid], 'decode_forward', tracing.nowNs(), tracing.nowNs() + 1000)
  tr.reqFinish(rid)
}

t.test('an unsampled carrier records nothing, in the root process or downstream', async (t) => {
  const s = await tracedSession(t)
  const worker = tracing.createThreadTracer('Worker', 0, 0)
  tracing.reqStart('a', { traceparent: UNSAMPLED }, { root: true })
  t.equal(tracing.getPropagateContext('a'), null)
  t.equal(tracing.liveRequestCount(), 0, 'no context held for an unsampled rid')
  worker.reqStart('a', { traceparent: UNSAMPLED, prev: UNSAMPLED })
  t.equal(tracing.liveRequestCount(), 0)
  fullRequest(tracing, 'a')
  fullRequest(worker, 'a')
  worker.reqStart('b', null)
  t.equal(tracing.liveRequestCount(), 0, 'no carrier downstream: not traced')
  const spans = await s.finish()
  t.same(spans, [])
})

t.test('sample rate 0: no spans at all; setSampleRate(1) at run time turns it on', async (t) => {
  const s = await tracedSession(t, { sampleRate: 0 })
  for (let i = 0; i < 50; i++) {
    tracing.reqStart(`r${i}`, null, { root: true })
    fullRequest(tracing, `r${i}`)
  }
  t.equal(tracing.liveRequestCount(), 0)
  await tracing.flushTracing()
  t.equal(s.receiver.spans.length, 0)
  tracing.setSampleRate(1)
  t.equal(tracing.getSampleRate(), 1)
  tracing.reqStart('on', null, { root: true })
  fullRequest(tracing, 'on')
  const spans = await s.finish()
  t.ok(spans.some((x) => x.name === 'llm_request'))
  t.ok(spans.every((x) => x.attributes['spanserve.request.id'] === undefined || x.attributes['spanserve.request.id'] === 'on'))
})

t.test('ratio 0.5 samples about half, decided per trace', async (t) => {
  const s = await tracedSession(t, { sampleRate: 0.5 })
  for (let i = 0; i < 400; i++) {
    tracing.reqStart(`r${i}`, null, { root: true })
    tracing.reqFinish(`r${i}`)
  }
  const roots = (await s.finish()).filter((x) => x.name === 'llm_request').length
  t.ok(roots > 120 && roots < 280, `sampled ${roots}/400`)
})

t.test('parentBased false ignores the caller flag but downstream hops still follow the root', async (t) => {
  const s = await tracedSession(t, { parentBased: false, sampleRate: 1 })
  const worker = tracing.createThreadTracer('Worker', 0, 0)
  tracing.reqStart('x', { traceparent: UNSAMPLED }, { root: true })
  t.ok(tracing.getPropagateContext('x'), 'caller said unsampled, we sample anyway')
  tracing.setSampleRate(0)
  worker.reqStart('x', tracing.getPropagateContext('x'))
  worker.reqFinish('x')
  tracing.reqFinish('x')
  const spans = await s.finish()
  t.equal(spans.length, 3, 'root, server thread and worker thread (worker did not re-sample)')
})

t.test('parent-based (default): a sampled caller is honoured even at ratio 0', async (t) => {
  const s = await tracedSession(t, { sampleRate: 0 })
  tracing.reqStart('y', { traceparent: SAMPLED }, { root: true })
  tracing.reqFinish('y')
  const spans = await s.finish()
  t.equal(spans.length, 2)
  t.ok(spans.every((x) => x.traceId === '0af7651916cd43dd8448eb211c80319c'))
})
