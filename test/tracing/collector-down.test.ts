/** A collector that is down or overwhelmed costs spans (counted, warned once), never a throw. */
import t from 'tap'
import { createServer } from 'node:net'
import * as tracing from '../../src/tracing/index.ts'
import { tracingOptions } from './fixtures/harness.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'

/** A port that was just free: nothing listens there. */
async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

function capture(): { warnings: Array<{ obj: object; msg: string }>; log: tracing.WarnLogger } {
  const warnings: Array<{ obj: object; msg: string }> = []
  return { warnings, log: { warn: (obj, msg) => warnings.push({ obj, msg }) } }
}

for (const protocol of ['grpc', 'http/protobuf'] as const) {
  t.test(`${protocol} collector down: no throw, spans counted as dropped, one warning, no headers logged`, async (t) => {
    const port = await closedPort()
    const { warnings, log } = capture()
    const before = tracing.droppedSpans()
    const endpoint = protocol === 'grpc' ? `http://127.0.0.1:${port}` : `http://127.0.0.1:${port}/v1/traces`
    await tracing.initTracing(tracingOptions({ otlpEndpoint: endpoint, otlpProtocol: protocol, exportTimeoutMs: 500, otlpHeaders: { authorization: 'Bearer SECRET' } }), { role: 'server' }, { log })
    t.teardown(() => tracing.shutdownTracing())
    const t0 = performance.now()
    for (let i = 0; i < 20; i++) {
      tracing.reqStart(`r${i}`, null, { root: true })
      tracing.sliceStart(`r${i}`, 'tokenize')
      tracing.sliceEnd(`r${i}`, 'tokenize')
      tracing.reqFinish(`r${i}`)
    }
    t.ok(performance.now() - t0 < 200, 'serving calls did not wait for the collector')
    await tracing.flushTracing()
    await tracing.flushTracing()
    t.equal(tracing.droppedSpans() - before, 60, 'root + thread + slice for each of 20 requests')
    t.equal(warnings.length, 1, 'warned once')
    t.notMatch(JSON.stringify(warnings), /SECRET|authorization/i, 'headers never logged')
    t.match(warnings[0]!.obj, { destination: new RegExp(`127\\.0\\.0\\.1:${port}`) })
    await tracing.shutdownTracing()
    t.equal(tracing.droppedSpans() - before, 60, 'the count survives shutdown')
  })
}

t.test('a full export queue drops and counts instead of growing', async (t) => {
  const receiver = await startOtlpReceiver({ protocol: 'grpc' })
  const { warnings, log } = capture()
  const before = tracing.droppedSpans()
  await tracing.initTracing(tracingOptions({ otlpEndpoint: receiver.endpoint, maxQueueSize: 10 }), { role: 'server' }, { log })
  t.teardown(async () => {
    await tracing.shutdownTracing()
    await receiver.close()
  })
  // 30 spans ended in one synchronous burst: the queue holds 10 (one export batch starts at 10).
  for (let i = 0; i < 15; i++) {
    tracing.reqStart(`q${i}`, null, { root: true })
    tracing.reqFinish(`q${i}`)
  }
  await tracing.shutdownTracing()
  const dropped = tracing.droppedSpans() - before
  t.equal(receiver.spans.length + dropped, 30, 'every span either arrived or was counted')
  t.ok(dropped > 0, `dropped ${dropped}`)
  t.equal(warnings.length, 1)
})
