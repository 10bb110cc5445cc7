/** A real child process continues the trace from a JSON carrier: one trace, linked slices. */
import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as tracing from '../../src/tracing/index.ts'
import { one, tracedSession } from './fixtures/harness.ts'

const child = fileURLToPath(new URL('./fixtures/child-worker.ts', import.meta.url))

function runChild(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', child, ...args], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)))
  })
}

t.test('carrier across a real process boundary', async (t) => {
  const s = await tracedSession(t)
  tracing.reqStart('rid-x', null, { root: true })
  tracing.sliceStart('rid-x', 'api_server_dispatch')
  const carrier = JSON.stringify(tracing.getPropagateContext('rid-x'))
  tracing.sliceEnd('rid-x', 'api_server_dispatch')

  const out = await runChild([s.receiver.endpoint, carrier, 'rid-x'])
  const back = tracing.readCarrier(out.trim())
  t.ok(back, 'the child sends a carrier back')
  tracing.setPropagateContext('rid-x', back)
  tracing.sliceStart('rid-x', 'detokenize')
  tracing.sliceEnd('rid-x', 'detokenize')
  tracing.reqFinish('rid-x')

  const spans = await s.finish()
  t.equal(new Set(spans.map((x) => x.traceId)).size, 1, 'one trace id across processes')
  const root = one(spans, 'llm_request')
  const workerThread = spans.find((x) => x.name.startsWith('Worker [TP 0] [DP 0] ['))!
  t.ok(workerThread, 'worker thread span')
  t.not(workerThread.resource['process.pid'], process.pid, 'exported by the child')
  t.equal(workerThread.parentSpanId, root.spanId)
  const prefill = one(spans, 'prefill_forward')
  const decode = one(spans, 'decode_forward')
  t.same(
    prefill.links.map((l) => l.spanId),
    [one(spans, 'api_server_dispatch').spanId],
  )
  t.same(
    decode.links.map((l) => l.spanId),
    [prefill.spanId],
  )
  t.equal(decode.attributes['spanserve.batch.size'], 2)
  t.same(
    one(spans, 'detokenize').links.map((l) => l.spanId),
    [decode.spanId],
    'the way back links too',
  )
})
