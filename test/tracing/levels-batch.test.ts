import t from 'tap'
import * as tracing from '../../src/tracing/index.ts'
import { tracedSession } from './fixtures/harness.ts'

function decodeSteps(w: tracing.ThreadTracer, rids: string[], steps: number): void {
  let ts = tracing.nowNs()
  for (let step = 0; step < steps; step++) {
    w.batchSlice(rids, 'decode_forward', ts, ts + 1e6, tracing.batchAttributes(rids.length, step))
    ts += 1e6
  }
}

t.test('level 3: one decode_forward per step per request; level 1: one decode_loop per request', async (t) => {
  const s = await tracedSession(t, { level: 3 })
  const w = tracing.createThreadTracer('Worker', 1, 0)
  w.reqStart('a', tracing.makeCarrier(tracing.parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')!))
  decodeSteps(w, ['a'], 4)
  w.reqFinish('a')
  tracing.setLevel(1)
  t.equal(tracing.getLevel(), 1)
  w.reqStart('b', tracing.makeCarrier(tracing.parseTraceparent('00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')!))
  w.sliceStart('b', 'chunked_prefill', { level: 2 })
  w.sliceStart('b', 'prefill_forward')
  w.sliceEnd('b', 'prefill_forward')
  w.sliceEnd('b', 'chunked_prefill')
  decodeSteps(w, ['b'], 4)
  w.reqFinish('b')
  const spans = await s.finish()
  const a = spans.filter((x) => x.traceId.startsWith('0af'))
  const b = spans.filter((x) => x.traceId.startsWith('1af'))
  t.equal(a.filter((x) => x.name === 'decode_forward').length, 4)
  t.equal(a.filter((x) => x.name === 'decode_loop').length, 0)
  const bNames = b.map((x) => x.name).sort()
  t.same(
    bNames.filter((n) => !n.startsWith('Worker')),
    ['decode_loop', 'prefill_forward'],
    'level-2 slice skipped, decode aggregated',
  )
  const loop = b.find((x) => x.name === 'decode_loop')!
  t.equal(loop.attributes['spanserve.decode.steps'], 4)
  t.equal(loop.attributes['spanserve.tp_rank'], undefined, 'ranks are on the thread span, not repeated')
  t.equal(b.find((x) => x.spanId === loop.parentSpanId)!.attributes['spanserve.tp_rank'], 1)
  t.equal(BigInt(loop.endTimeUnixNano) - BigInt(loop.startTimeUnixNano) > 3_900_000n, true, 'spans all steps')
  t.same(
    loop.links.map((l) => l.spanId),
    [b.find((x) => x.name === 'prefill_forward')!.spanId],
  )
})

t.test('batchSlice with B = 1..64: exactly one slice per traced request per step, with batch attributes', async (t) => {
  const s = await tracedSession(t, { level: 3 })
  const w = tracing.createThreadTracer('Worker', 0, 2)
  const sizes = [1, 2, 3, 8, 17, 32, 64]
  const carrierFor = (i: number) => ({ traceparent: `00-${(i + 1).toString(16).padStart(32, '0')}-b7ad6b7169203331-01` })
  let expected = 0
  for (const B of sizes) {
    const rids = Array.from({ length: B }, (_, i) => `B${B}-${i}`)
    rids.forEach((rid, i) => w.reqStart(rid, carrierFor(B * 100 + i)))
    // plus untraced rids mixed in: they cost a lookup and record nothing
    const mixed = [...rids, 'ghost-1', 'ghost-2']
    w.batchSlice(mixed, 'decode_forward', tracing.nowNs(), tracing.nowNs() + 5e5, tracing.batchAttributes(B, 7))
    expected += B
    for (const rid of rids) w.reqFinish(rid)
  }
  const all = await s.finish()
  const spans = all.filter((x) => x.name === 'decode_forward')
  t.equal(spans.length, expected)
  for (const B of sizes) {
    const mine = spans.filter((x) => x.attributes['spanserve.batch.size'] === B)
    t.equal(mine.length, B, `B=${B}`)
    t.equal(new Set(mine.map((x) => x.traceId)).size, B, 'each in its own request trace')
    t.ok(mine.every((x) => x.attributes['spanserve.batch.size'] === B && x.attributes['spanserve.step'] === 7))
    const threads = mine.map((x) => all.find((y) => y.spanId === x.parentSpanId)!)
    t.ok(
      threads.every((y) => y.attributes['spanserve.tp_rank'] === 0 && y.attributes['spanserve.dp_rank'] === 2),
      "under the thread's span, which carries the ranks",
    )
  }
})

t.test('batchSlice cost per request stays flat as B grows', async (t) => {
  await tracedSession(t, { level: 3, maxQueueSize: 1_000_000 })
  const w = tracing.createThreadTracer('Worker', 0, 0)
  const perRequestUs = (B: number): number => {
    const rids = Array.from({ length: B }, (_, i) => `p${B}-${i}`)
    rids.forEach((rid, i) => w.reqStart(rid, { traceparent: `00-${(i + 1).toString(16).padStart(32, '0')}-b7ad6b7169203331-01` }))
    const attrs = tracing.batchAttributes(B, 0)
    const steps = Math.ceil(20_000 / B)
    const t0 = performance.now()
    for (let i = 0; i < steps; i++) w.batchSlice(rids, 'decode_forward', 1.7e18, 1.7e18 + 1e6, attrs)
    const us = ((performance.now() - t0) * 1000) / (steps * B)
    for (const rid of rids) w.reqFinish(rid)
    return us
  }
  perRequestUs(8) // warm-up
  const small = perRequestUs(4)
  const large = perRequestUs(256)
  t.comment(`µs per request per step: B=4 ${small.toFixed(2)}, B=256 ${large.toFixed(2)}`)
  t.ok(large < small * 3 + 2, 'no superlinear growth')
})

t.test('anonymous slices, auto-next, nesting and threadFinish', async (t) => {
  const s = await tracedSession(t)
  const tk = tracing.createThreadTracer('Tokenizer')
  tk.reqStart('r', { traceparent: '00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
  tk.sliceStart('r', 'recv')
  tk.sliceEnd('r', 'nonexistent-is-ignored')
  tk.sliceEnd('r', 'recv')
  tk.sliceStart('r', null)
  tk.sliceEnd('r', 'tokenize', { autoNextAnon: true })
  tk.sliceStart('r', 'inner')
  tk.sliceAttrs('r', { depth: 2 })
  tk.sliceEnd('r', 'inner')
  tk.sliceEnd('r', 'api_server_dispatch', { threadFinish: true })
  t.equal(tk.size, 0)
  const spans = await s.finish()
  const byName = (n: string) => spans.find((x) => x.name === n)!
  t.notOk(
    spans.some((x) => x.name === '(anonymous)'),
    'anonymous slices are named by their end',
  )
  t.equal(byName('inner').parentSpanId, byName('api_server_dispatch').spanId, 'nested inside the open anonymous slice')
  t.equal(byName('inner').attributes.depth, 2)
  t.same(byName('inner').links, [], 'nested slices do not link')
  t.same(
    byName('api_server_dispatch').links.map((l) => l.spanId),
    [byName('tokenize').spanId],
  )
  t.same(
    byName('tokenize').links.map((l) => l.spanId),
    [byName('recv').spanId],
  )
  t.notOk(
    spans.some((x) => x.name === 'nonexistent-is-ignored'),
    'an end with no matching open slice does nothing',
  )
  t.ok(
    spans.some((x) => x.name.startsWith('Tokenizer [')),
    'thread span ended by threadFinish',
  )
})

t.test('a batch slice is exported like a span the SDK made: kind, status, resource, scope, parent, link, limits', async (t) => {
  const s = await tracedSession(t, { level: 3, attributeValueLengthLimit: 8 })
  const w = tracing.createThreadTracer('Worker', 0, 1)
  w.reqStart('r', { traceparent: '00-3af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
  const t0 = tracing.nowNs()
  // prefill_forward goes through the SDK (sliceStart/sliceEnd); decode_forward is a batch slice.
  w.sliceStart('r', 'prefill_forward', { ts: t0 })
  w.sliceEnd('r', 'prefill_forward', { ts: t0 + 1e6, attributes: { 'spanserve.batch.id': 'a-long-batch-id' } })
  w.batchSlice(['r'], 'decode_forward', t0 + 1e6, t0 + 1.5e6, { 'spanserve.batch.id': 'a-long-batch-id', 'spanserve.batch.size': 1 })
  w.reqFinish('r', { ts: t0 + 2e6 })
  const spans = await s.finish()
  const sdk = spans.find((x) => x.name === 'prefill_forward')!
  const slice = spans.find((x) => x.name === 'decode_forward')!
  const thread = spans.find((x) => x.name.startsWith('Worker'))!
  t.equal(slice.traceId, thread.traceId)
  t.equal(slice.parentSpanId, thread.spanId, 'child of the thread span')
  t.match(slice.spanId, /^[0-9a-f]{16}$/)
  t.not(slice.spanId, sdk.spanId)
  t.same(
    slice.links.map((l) => l.spanId),
    [sdk.spanId],
    'links to the slice before it',
  )
  // Epoch nanoseconds as numbers resolve to 256 ns.
  const near = (ns: string, want: number) => Math.abs(Number(BigInt(ns) - BigInt(Math.round(want)))) <= 512
  t.ok(near(slice.startTimeUnixNano, t0 + 1e6), 'start as given')
  t.ok(near(slice.endTimeUnixNano, t0 + 1.5e6), 'end as given')
  for (const k of ['kind', 'status', 'resource', 'scope', 'via'] as const) t.same(slice[k], sdk[k], k)
  t.equal(sdk.attributes['spanserve.batch.id'], 'a-long-b', "the SDK's span limit")
  t.same(slice.attributes, { 'spanserve.batch.id': 'a-long-b', 'spanserve.batch.size': 1 }, 'the batch attributes only, cut to the same limit')
})
