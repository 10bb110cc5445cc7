import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { one, tracedSession } from './fixtures/harness.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'

t.test('spans exported over OTLP http/protobuf arrive decoded', async (t) => {
  const s = await tracedSession(t, { otlpHeaders: { 'x-api-key': 'secret' } }, { role: 'scheduler', dpRank: 1 }, {}, 'http')
  tracing.reqStart('r1', null, { root: true })
  tracing.sliceStart('r1', 'prefill_waiting')
  tracing.sliceEnd('r1', 'prefill_waiting', { error: new Error('boom') })
  tracing.reqFinish('r1')
  const spans = await s.finish()
  const slice = one(spans, 'prefill_waiting')
  const thread = one(spans, `Scheduler [DP 1] [testhost ${process.pid}]`)
  t.equal(slice.via, 'http/protobuf')
  t.equal(slice.parentSpanId, thread.spanId)
  t.equal(slice.status.code, 2)
  t.equal(slice.events[0]?.name, 'exception')
  t.equal(slice.events[0]?.attributes['exception.message'], 'boom')
  t.equal(thread.attributes['spanserve.dp_rank'], 1)
  t.equal(thread.resource['spanserve.dp_rank'], 1)
})

t.test('the receiver also accepts OTLP/JSON over HTTP', async (t) => {
  const r = await startOtlpReceiver({ protocol: 'http' })
  t.teardown(() => r.close())
  const body = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'x' } }] },
        scopeSpans: [
          {
            scope: { name: 's' },
            spans: [
              {
                traceId: '0af7651916cd43dd8448eb211c80319c',
                spanId: 'b7ad6b7169203331',
                parentSpanId: '',
                name: 'json-span',
                kind: 2,
                startTimeUnixNano: '1',
                endTimeUnixNano: '2',
                attributes: [{ key: 'n', value: { intValue: '7' } }],
                links: [{ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: '00f067aa0ba902b7' }],
                status: { code: 1 },
              },
            ],
          },
        ],
      },
    ],
  }
  const res = await fetch(`${r.endpoint}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  t.equal(res.status, 200)
  const [span] = await r.waitForSpans((s) => s.length === 1, 2000)
  t.equal(span!.via, 'http/json')
  t.equal(span!.traceId, '0af7651916cd43dd8448eb211c80319c')
  t.equal(span!.attributes.n, 7)
  t.same(span!.links, [{ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: '00f067aa0ba902b7', attributes: {} }])
  t.equal(span!.resource['service.name'], 'x')
})
