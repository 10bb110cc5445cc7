/** Contexts are freed on finish, threadFinish, abort and error: nothing is left after 1000 requests. */
import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { tracedSession } from './fixtures/harness.ts'

t.test('1000 requests through every ending leave no live context', async (t) => {
  const s = await tracedSession(t, { level: 1, maxQueueSize: 100_000 })
  const sched = tracing.createThreadTracer('Scheduler', undefined, 0)
  const worker = tracing.createThreadTracer('Worker', 0, 0)
  for (let i = 0; i < 1000; i++) {
    const rid = `r${i}`
    tracing.reqStart(rid, null, { root: true })
    tracing.sliceStart(rid, 'api_server_dispatch')
    const c = tracing.getPropagateContext(rid)
    sched.reqStart(rid, c)
    worker.reqStart(rid, JSON.stringify(sched.getPropagateContext(rid)))
    sched.sliceStart(rid, 'prefill_waiting')
    worker.batchSlice([rid], 'decode_forward', tracing.nowNs(), tracing.nowNs() + 10)
    switch (i % 4) {
      case 0:
        sched.sliceEnd(rid, 'prefill_waiting', { threadFinish: true })
        worker.reqFinish(rid)
        tracing.reqFinish(rid)
        break
      case 1:
        sched.reqAbort(rid, 'client gone')
        worker.reqAbort(rid)
        tracing.reqAbort(rid)
        break
      case 2:
        sched.reqFinish(rid, { error: 'oom' })
        worker.reqFinish(rid, { error: new Error('oom') })
        tracing.reqFinish(rid, { error: 'oom' })
        break
      default:
        // finish out of order: the root first, stragglers after
        tracing.reqFinish(rid)
        worker.reqFinish(rid)
        sched.reqFinish(rid)
    }
  }
  t.equal(tracing.liveRequestCount(), 0)
  t.equal(sched.size + worker.size, 0)
  const spans = await s.finish()
  t.equal(spans.filter((x) => x.name === 'llm_request').length, 1000)
  t.equal(spans.filter((x) => x.name === 'decode_loop').length, 1000)
  t.equal(tracing.droppedSpans(), 0)
})

t.test('shutdown releases whatever was still open', async (t) => {
  const s = await tracedSession(t)
  for (let i = 0; i < 10; i++) {
    tracing.reqStart(`open${i}`, null, { root: true })
    tracing.sliceStart(`open${i}`, 'tokenize')
  }
  t.equal(tracing.liveRequestCount(), 10)
  const spans = await s.finish()
  t.equal(tracing.liveRequestCount(), 0)
  t.equal(spans.filter((x) => x.name === 'tokenize').length, 10, 'open spans were ended and flushed')
})
