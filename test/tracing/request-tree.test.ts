/**
 * One request through four "processes" (thread tracers in one process), the carrier crossing
 * each hop as a JSON string, forms one tree with one trace id, and every slice links to the
 * slice before it for that request, across hops.
 */
import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { one, tracedSession } from './fixtures/harness.ts'
import type { ReceivedSpan } from '../../harness/otlp-receiver.ts'

t.test('server → tokenizer → scheduler → 2 TP workers: one trace, thread spans, linked slices', async (t) => {
  const s = await tracedSession(t, { level: 3 })
  const tokenizer = tracing.createThreadTracer('Tokenizer')
  const scheduler = tracing.createThreadTracer('Scheduler', undefined, 0)
  const workers = [tracing.createThreadTracer('Worker', 0, 0), tracing.createThreadTracer('Worker', 1, 0)]
  const rid = 'req-1'

  // server process
  tracing.reqStart(rid, null, { root: true })
  tracing.sliceStart(rid, 'api_server_dispatch')
  const toTokenizer = JSON.stringify(tracing.getPropagateContext(rid))
  tracing.sliceEnd(rid, 'api_server_dispatch')

  // tokenizer process
  tokenizer.reqStart(rid, JSON.parse(toTokenizer))
  tokenizer.sliceStart(rid, null)
  tokenizer.sliceEnd(rid, 'tokenize', { autoNextAnon: true })
  const toScheduler = JSON.stringify(tokenizer.getPropagateContext(rid))
  tokenizer.sliceEnd(rid, 'dpc_dispatch')

  // scheduler process
  scheduler.reqStart(rid, toScheduler)
  scheduler.sliceStart(rid, 'prefill_waiting')
  const toWorkers = JSON.stringify(scheduler.getPropagateContext(rid))
  scheduler.sliceEnd(rid, 'prefill_waiting', { threadFinish: true })
  t.equal(scheduler.size, 0, 'threadFinish freed the scheduler context')
  t.equal(scheduler.getPropagateContext(rid), null, 'nothing left for the rid after threadFinish')

  // worker processes: one prefill slice, then batched decode steps
  const step0 = tracing.nowNs()
  for (const w of workers) {
    w.reqStart(rid, toWorkers)
    w.sliceStart(rid, 'prefill_forward')
    w.sliceEnd(rid, 'prefill_forward')
    w.batchSlice([rid], 'decode_forward', step0, step0 + 1e6, tracing.batchAttributes(1, 0))
    w.batchSlice([rid], 'decode_forward', step0 + 1e6, step0 + 2e6, tracing.batchAttributes(1, 1))
    w.reqFinish(rid)
  }
  const back = JSON.stringify(workers[0]!.getPropagateContext(rid))
  t.equal(back, 'null', 'finished rid has no carrier')

  // back in the tokenizer: detokenize links to the last decode step
  tokenizer.sliceStart(rid, 'detokenize')
  tokenizer.sliceEnd(rid, 'detokenize')
  tokenizer.reqFinish(rid)
  tracing.reqFinish(rid)

  const spans = await s.finish()
  t.equal(new Set(spans.map((x) => x.traceId)).size, 1, 'one trace id')
  const root = one(spans, 'llm_request')
  const threads = spans.filter((x) => / \[testhost \d+\]$/.test(x.name))
  t.same(threads.map((x) => x.name.replace(/ \[testhost \d+\]$/, '')).sort(), ['Scheduler [DP 0]', 'Server', 'Tokenizer', 'Worker [TP 0] [DP 0]', 'Worker [TP 1] [DP 0]'])
  for (const th of threads) t.equal(th.parentSpanId, root.spanId, `${th.name} is a child of the request root`)

  const threadOf = (x: ReceivedSpan): string => spans.find((p) => p.spanId === x.parentSpanId)!.name
  const dispatch = one(spans, 'api_server_dispatch')
  const tokenize = one(spans, 'tokenize')
  const dpc = one(spans, 'dpc_dispatch')
  const waiting = one(spans, 'prefill_waiting')
  t.match(threadOf(tokenize), /^Tokenizer/)
  t.same(
    tokenize.links.map((l) => l.spanId),
    [dispatch.spanId],
    'tokenize links to the server slice across the hop',
  )
  t.same(
    dpc.links.map((l) => l.spanId),
    [tokenize.spanId],
    'auto-next anonymous slice links to the one before',
  )
  t.same(
    waiting.links.map((l) => l.spanId),
    [dpc.spanId],
    'scheduler slice links to the open tokenizer slice at send time',
  )
  const prefills = spans.filter((x) => x.name === 'prefill_forward')
  t.equal(prefills.length, 2)
  for (const p of prefills) {
    t.same(
      p.links.map((l) => l.spanId),
      [waiting.spanId],
    )
    const steps = spans.filter((x) => x.name === 'decode_forward' && x.parentSpanId === p.parentSpanId)
    t.equal(steps.length, 2)
    const [a, b] = steps.sort((x, y) => Number(x.attributes['spanserve.step']) - Number(y.attributes['spanserve.step']))
    t.same(
      a!.links.map((l) => l.spanId),
      [p.spanId],
    )
    t.same(
      b!.links.map((l) => l.spanId),
      [a!.spanId],
    )
    t.equal(BigInt(b!.endTimeUnixNano) - BigInt(a!.startTimeUnixNano) > 1_900_000n, true, 'explicit timestamps kept')
  }
  t.equal(tracing.liveRequestCount(), 0)
})

t.test('setPropagateContext on a traced rid moves the link target (way back from the workers)', async (t) => {
  const s = await tracedSession(t, { level: 3 })
  const worker = tracing.createThreadTracer('Worker', 0, 0)
  tracing.reqStart('r', null, { root: true })
  worker.reqStart('r', tracing.getPropagateContext('r'))
  worker.sliceStart('r', 'prefill_forward')
  worker.sliceEnd('r', 'prefill_forward')
  const fromWorker = worker.getPropagateContext('r')
  worker.reqFinish('r')
  tracing.setPropagateContext('r', fromWorker)
  tracing.sliceStart('r', 'detokenize')
  tracing.sliceEnd('r', 'detokenize')
  tracing.reqFinish('r')
  const spans = await s.finish()
  t.same(
    one(spans, 'detokenize').links.map((l) => l.spanId),
    [one(spans, 'prefill_forward').spanId],
  )
})
