/** Off means off: no SDK, no globals, every API call a no-op. */
import t from 'tap'
import { trace } from '@opentelemetry/api'
import * as tracing from '../../src/tracing/index.ts'
import { tracingOptions } from './fixtures/harness.ts'

t.test('disabled tracing: initTracing does nothing and the API is inert', async (t) => {
  await tracing.initTracing(tracingOptions({ enabled: false, otlpEndpoint: 'http://127.0.0.1:1' }), { role: 'server' })
  t.equal(tracing.isTracingEnabled(), false)
  t.equal(trace.getTracerProvider().getTracer('x').startSpan('y').isRecording(), false, 'no provider registered')
  tracing.reqStart('r', null, { root: true })
  tracing.sliceStart('r', 'tokenize')
  tracing.sliceEnd('r', 'tokenize', { autoNextAnon: true })
  tracing.event('r', 'first_token')
  tracing.sliceAttrs('r', { a: 1 })
  tracing.reqAttrs('r', { a: 1 })
  tracing.batchSlice(['r'], 'decode_forward', 0, 1)
  tracing.setPropagateContext('r', { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
  t.equal(tracing.getPropagateContext('r'), null)
  t.equal(tracing.isTraced('r'), false)
  t.equal(tracing.contentAttributes('prompt'), undefined)
  tracing.reqFinish('r')
  tracing.reqAbort('r')
  t.equal(tracing.liveRequestCount(), 0)
  t.equal(tracing.droppedSpans(), 0)
  await tracing.flushTracing()
  await tracing.shutdownTracing()
})

/** Minor and major collections that start while `fn` runs (a scavenge means something allocated). */
async function collectionsDuring(fn: () => void): Promise<number> {
  const starts: number[] = []
  const obs = new PerformanceObserver((list) => starts.push(...list.getEntries().map((e) => e.startTime)))
  obs.observe({ entryTypes: ['gc'] })
  const t0 = performance.now()
  fn()
  const t1 = performance.now()
  // Entries arrive asynchronously; only those that began inside the run count.
  await new Promise((r) => setTimeout(r, 50))
  obs.disconnect()
  return starts.filter((s) => s >= t0 && s <= t1).length
}

t.test('the off path allocates nothing: a million rounds of the hot-path calls set off no collection', async (t) => {
  const rids = ['r', 's']
  const round = () => {
    tracing.sliceStart('r', 'decode')
    tracing.sliceEnd('r', 'decode')
    tracing.batchSlice(rids, 'decode_forward', 0, 1)
    tracing.event('r', 'first_token')
    tracing.reqStart('r', null)
    tracing.reqFinish('r')
  }
  const rounds = (n: number, body: (i: number) => void) => () => {
    for (let i = 0; i < n; i++) body(i)
  }
  rounds(100_000, round)() // let V8 compile the calls first
  t.equal(await collectionsDuring(rounds(1_000_000, round)), 0, 'no garbage collection during a million rounds')

  // The same measure sees a body that allocates 32 bytes a round: the check can fail.
  let kept: unknown = null
  const allocating = rounds(1_000_000, (i) => {
    round()
    kept = { i, at: kept === null ? 0 : 1 }
  })
  allocating()
  t.ok((await collectionsDuring(allocating)) > 0, 'an allocating off path would set off collections')
})
