/**
 * White-box tests of the batching policy: the loop drives a scripted worker that answers each step
 * with token 5 (or what `token` says) for every sequence that is due one, once per decode step (the
 * real worker is exercised end to end elsewhere).
 * The policy tests run in lockstep (depth 1) and under the overlap schedule (depth 2).
 */
import t from 'tap'
import { SchedulerLoop, type LoopIo } from '../../src/scheduler/loop.ts'
import type { BatchTokenIdOutput, ForwardBatch, ReqError, TokenizedGenerateReqInput } from '../../src/ipc/messages.ts'
import { conditionWaiters } from '../helpers/until.ts'

type Limits = ConstructorParameters<typeof SchedulerLoop>[0]

/** The scripted worker's token for the n-th token (0-based) it samples for rid. */
type TokenOf = (rid: string, n: number) => number

function makeHarness(limits: Partial<Limits> = {}, token: TokenOf = () => 5) {
  const sampled = new Map<string, number>()
  const steps: ForwardBatch[] = []
  /** Steps sent and output batches received, in the order they happened. */
  const events: string[] = []
  const outputs: BatchTokenIdOutput[] = []
  const errors: ReqError[] = []
  const { until, check } = conditionWaiters()
  let loop: SchedulerLoop
  const io: LoopIo = {
    forward: (batch) => {
      steps.push(batch)
      events.push(`step ${batch.step}`)
      const rids = batch.prefill.filter((p) => p.last).map((p) => p.rid)
      for (let n = 0; batch.decode.length > 0 && n < batch.decodeSteps; n++) rids.push(...batch.decode)
      const tokens = Int32Array.from(rids, (rid) => {
        const n = sampled.get(rid) ?? 0
        sampled.set(rid, n + 1)
        return token(rid, n)
      })
      setTimeout(() => loop.onForwardOutput({ type: 'forward_out', step: batch.step, tpRank: 0, allReduceMs: 0, rids, tokens, failed: [], prefillMs: 0, decodeMs: 0 }))
      check()
    },
    output: (o) => {
      outputs.push(o)
      events.push('output')
      check()
    },
    error: (e) => errors.push(e),
  }
  loop = new SchedulerLoop({ maxBatchSize: 4, maxQueue: 8, maxPrefillTokens: 8, maxTotalTokens: 1000, contextLength: 100, eosTokenIds: [0], tpSize: 1, depth: 1, decodeSteps: 1, ...limits }, io)
  void loop.run()
  /** Resolves once rid has had a token: it is admitted and decoding. */
  const decoding = (rid: string) => until(() => outputs.some((o) => o.rids.includes(rid)))
  return { loop, steps, outputs, errors, events, until, decoding }
}

const req = (rid: string, promptLen: number, maxTokens: number): TokenizedGenerateReqInput => ({
  type: 'tokenized',
  rid,
  trace: null,
  inputIds: new Int32Array(promptLen).fill(7),
  sampling: { temperature: 0, topP: 1, topK: 0, seed: null },
  maxTokens,
  ignoreEos: false,
  arrivalMs: 0,
})

for (const depth of [1, 2] as const) {
  const harness = (limits: Partial<Limits> = {}) => makeHarness({ depth, ...limits })
  t.test(depth === 1 ? 'lockstep' : 'overlap schedule', async (t) => {
    t.test('long prompts prefill in chunks within the per-step token budget', async (t) => {
      const h = harness()
      h.loop.submit(req('a', 20, 2))
      await h.loop.idle()
      const chunks = h.steps.flatMap((s) => s.prefill.map((p) => [p.start, p.tokens.length, p.last]))
      t.same(chunks, [
        [0, 8, false],
        [8, 8, false],
        [16, 4, true],
      ])
      const tokens = h.outputs.filter((o) => o.rids.includes('a'))
      t.equal(tokens.length, 2, 'max_tokens tokens')
      t.equal(tokens.at(-1)!.finished[0], 'length')
      h.loop.close()
    })

    t.test('new requests join the running batch at a step boundary', async (t) => {
      const h = harness()
      h.loop.submit(req('a', 2, 90))
      await h.decoding('a')
      h.loop.submit(req('b', 2, 3))
      await h.loop.idle()
      const joint = h.steps.find((s) => s.decode.includes('a') && s.prefill.some((p) => p.rid === 'b'))
      t.ok(joint, 'one step decodes a while it prefills b')
      const both = h.steps.find((s) => s.decode.includes('a') && s.decode.includes('b'))
      t.ok(both, 'a and b then decode in the same step')
      h.loop.close()
    })

    t.test('max batch size caps the running set; the rest waits', async (t) => {
      const h = harness({ maxBatchSize: 2 })
      for (const rid of ['a', 'b', 'c']) h.loop.submit(req(rid, 1, 4))
      await h.loop.idle()
      const widest = Math.max(...h.steps.map((s) => s.decode.length + s.prefill.length))
      t.equal(widest, 2)
      t.ok(
        h.outputs.some((o) => o.rids.includes('c')),
        'c runs once a slot frees',
      )
      h.loop.close()
    })

    t.test('a full queue refuses with SPANSERVE_ERR_QUEUE_FULL', async (t) => {
      const h = harness({ maxBatchSize: 1, maxQueue: 1 })
      h.loop.submit(req('a', 1, 30))
      // a admitted: out of the queue, so b takes the one place in it.
      await h.until(() => h.steps.length > 0)
      h.loop.submit(req('b', 1, 1))
      h.loop.submit(req('c', 1, 1))
      t.same(
        h.errors.map((e) => [e.rid, e.code]),
        [['c', 'SPANSERVE_ERR_QUEUE_FULL']],
      )
      h.loop.close()
    })

    t.test('an abort releases the sequence at the next step and returns its budget', async (t) => {
      const h = harness()
      h.loop.submit(req('a', 4, 80))
      await h.decoding('a')
      t.equal(h.loop.budget.usedTokens, 84)
      h.loop.abort('a')
      await h.loop.idle()
      t.ok(
        h.steps.some((s) => s.release.includes('a')),
        'the worker is told to drop its KV',
      )
      t.equal(h.loop.budget.usedTokens, 0)
      t.notOk(h.steps.at(-1)!.decode.includes('a'))
      h.loop.close()
    })

    t.test('EOS finishes with stop', async (t) => {
      const h = harness({ eosTokenIds: [5] })
      h.loop.submit(req('a', 3, 10))
      await h.loop.idle()
      t.same(
        h.outputs.map((o) => o.finished[0]),
        ['stop'],
      )
      h.loop.close()
    })
  })
}

t.test('lockstep sends a step only after the last one is answered, with the tokens to feed', async (t) => {
  const h = makeHarness({ depth: 1 })
  h.loop.submit(req('a', 2, 4))
  await h.loop.idle()
  t.same(h.events, ['step 1', 'output', 'step 2', 'output', 'step 3', 'output', 'step 4', 'output', 'step 5'])
  for (const s of h.steps.slice(1, 4)) t.same([...s.decodeTokens], [5], `step ${s.step} feeds the last token`)
  t.same(h.steps[4]!.release, ['a'], 'the last step only releases')
  h.loop.close()
})

t.test('overlap schedule: the next step is sent while the current one runs', async (t) => {
  const h = makeHarness({ depth: 2 })
  h.loop.submit(req('a', 2, 4))
  await h.loop.idle()
  t.same(h.events.slice(0, 3), ['step 1', 'step 2', 'output'], 'step 2 leaves before step 1 is answered')
  for (const s of h.steps.slice(1)) t.equal(s.decodeTokens.length, 0, 'the worker feeds its own last tokens')
  const decodes = h.steps.filter((s) => s.decode.includes('a')).length
  t.equal(decodes, 3, 'max_tokens is known ahead: one prefill and three decodes, no step too many')
  t.same(
    h.outputs.flatMap((o) => o.finished),
    [null, null, null, 'length'],
  )
  h.loop.close()
})

t.test('overlap schedule: a sequence that stops on EOS runs one step too many, and its token is dropped', async (t) => {
  const h = makeHarness({ depth: 2, eosTokenIds: [5] })
  h.loop.submit(req('a', 3, 10))
  h.loop.submit(req('b', 3, 10))
  await h.loop.idle()
  t.same(
    h.outputs.flatMap((o) => o.rids.map((rid, i) => [rid, o.finished[i]])),
    [
      ['a', 'stop'],
      ['b', 'stop'],
    ],
    'one token each, then nothing',
  )
  t.ok(
    h.steps.some((s) => s.decode.includes('a')),
    'the step sent before EOS was known decoded a',
  )
  t.ok(
    h.steps.some((s) => s.release.includes('a') && s.release.includes('b')),
    'then both were released',
  )
  t.equal(h.loop.budget.usedTokens, 0)
  h.loop.close()
})

t.test('overlap schedule: an abort while two steps are in flight drops the late tokens', async (t) => {
  const h = makeHarness({ depth: 2 })
  h.loop.submit(req('a', 2, 50))
  // After an output the next step leaves at once, beside the one already in flight.
  await h.until(() => h.outputs.length >= 2)
  h.loop.abort('a')
  const seen = h.outputs.length
  await h.loop.idle()
  t.equal(h.outputs.length, seen, 'no token after the abort')
  t.ok(h.steps.some((s) => s.release.includes('a')))
  t.equal(h.loop.running, 0)
  h.loop.close()
})

for (const depth of [1, 2] as const) {
  t.test(`continuous decode steps (depth ${depth})`, async (t) => {
    t.test('a decode-only batch runs up to N steps, never past what a sequence still needs', async (t) => {
      const h = makeHarness({ depth, decodeSteps: 4, contextLength: 12 })
      h.loop.submit(req('a', 2, 10))
      await h.loop.idle()
      t.same(
        h.steps.filter((s) => s.decode.length > 0).map((s) => s.decodeSteps),
        [4, 4, 1],
        'one token from the prefill, then 9 decode steps',
      )
      t.same(
        h.outputs.flatMap((o) => o.rids),
        new Array(10).fill('a'),
        'every token reaches the tokenizer, in order',
      )
      t.same(
        h.outputs.flatMap((o) => o.finished).filter((f) => f !== null),
        ['length'],
      )
      h.outputs.length = 0
      // Bounded by the context length: 4 prompt tokens + 8 generated = 12.
      h.loop.submit(req('b', 4, 50))
      await h.loop.idle()
      t.equal(h.outputs.flatMap((o) => o.rids).length, 8, 'stops at the context length')
      t.same(
        h.steps.filter((s) => s.decode.includes('b')).map((s) => s.decodeSteps),
        [4, 3],
      )
      t.equal(h.loop.budget.usedTokens, 0)
      h.loop.close()
    })

    t.test('a batch that prefills runs one step, so the new request is not held back', async (t) => {
      const h = makeHarness({ depth, decodeSteps: 8 })
      h.loop.submit(req('a', 2, 90))
      await h.decoding('a')
      h.loop.submit(req('b', 2, 3))
      await h.loop.idle()
      const joint = h.steps.find((s) => s.decode.includes('a') && s.prefill.some((p) => p.rid === 'b'))
      t.equal(joint?.decodeSteps, 1)
      t.ok(
        h.steps.some((s) => s.decode.includes('a') && s.decodeSteps === 8),
        'decode-only batches run 8 steps',
      )
      t.equal(h.outputs.flatMap((o) => o.rids).filter((r) => r === 'b').length, 3)
      h.loop.close()
    })

    t.test('EOS inside a batch finishes the request there; its later tokens are dropped', async (t) => {
      const h = makeHarness({ depth, decodeSteps: 4, eosTokenIds: [0] }, (rid, n) => (rid === 'a' && n === 2 ? 0 : 5))
      h.loop.submit(req('a', 2, 20))
      h.loop.submit(req('b', 2, 20))
      await h.loop.idle()
      const a = h.outputs.flatMap((o) => o.rids.map((rid, i) => [rid, o.tokens[i], o.finished[i]])).filter(([rid]) => rid === 'a')
      t.same(a, [
        ['a', 5, null],
        ['a', 5, null],
        ['a', 0, 'stop'],
      ])
      t.equal(h.outputs.flatMap((o) => o.rids).filter((r) => r === 'b').length, 20, 'b runs on to max_tokens')
      t.equal(h.loop.budget.usedTokens, 0)
      h.loop.close()
    })
  })
}
