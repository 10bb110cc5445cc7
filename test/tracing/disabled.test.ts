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

t.test('disabled hot path costs about nothing', async (t) => {
  const n = 1_000_000
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    tracing.sliceStart('r', 'decode')
    tracing.sliceEnd('r', 'decode')
  }
  const ns = ((performance.now() - t0) * 1e6) / n
  t.comment(`${ns.toFixed(1)} ns per sliceStart+sliceEnd with tracing off`)
  t.ok(ns < 200, 'well under a microsecond')
})
