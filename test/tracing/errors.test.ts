import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { one, tracedSession } from './fixtures/harness.ts'

t.test('a failed request: ERROR status on root, thread and open slices, exception events', async (t) => {
  const s = await tracedSession(t)
  tracing.reqStart('e', null, { root: true })
  tracing.sliceStart('e', 'tokenize')
  tracing.reqFinish('e', { error: new TypeError('bad prompt') })
  const spans = await s.finish()
  const root = one(spans, 'llm_request')
  const tok = one(spans, 'tokenize')
  const thread = spans.find((x) => x.name.startsWith('Server ['))!
  for (const sp of [root, tok, thread]) t.equal(sp.status.code, 2, `${sp.name} is ERROR`)
  t.equal(root.status.message, 'bad prompt')
  const ex = tok.events.find((e) => e.name === 'exception')!
  t.equal(ex.attributes['exception.type'], 'TypeError')
  t.equal(ex.attributes['exception.message'], 'bad prompt')
  t.ok(root.events.some((e) => e.name === 'exception'))
  t.equal(tracing.liveRequestCount(), 0)
})

t.test('a string error works too; an abort is an event, not an error', async (t) => {
  const s = await tracedSession(t)
  tracing.reqStart('s', null, { root: true })
  tracing.reqFinish('s', { error: 'queue full' })
  tracing.reqStart('a', null, { root: true })
  tracing.sliceStart('a', 'prefill_waiting')
  tracing.reqAbort('a', 'client disconnected')
  const spans = await s.finish()
  const roots = spans.filter((x) => x.name === 'llm_request')
  const sRoot = roots.find((x) => x.attributes['spanserve.request.id'] === 's')!
  const aRoot = roots.find((x) => x.attributes['spanserve.request.id'] === 'a')!
  t.equal(sRoot.status.code, 2)
  t.equal(sRoot.events[0]?.attributes['exception.message'], 'queue full')
  t.equal(aRoot.status.code, 0)
  t.equal(aRoot.events[0]?.name, 'aborted')
  t.equal(one(spans, 'prefill_waiting').events[0]?.attributes['spanserve.abort.reason'], 'client disconnected')
  t.equal(tracing.liveRequestCount(), 0)
})
