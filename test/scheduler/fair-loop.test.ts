/**
 * Fair sharing in the batching loop, against a scripted worker (as loop.test.ts): client A queues
 * more sequences than the batch holds, client B arrives after A's first step, and B is admitted
 * and served before A's backlog, the batch never running more than --max-batch-size sequences in
 * a step. Orders of events only: no timing.
 */
import t from 'tap'
import { SchedulerLoop, type LoopIo } from '../../src/scheduler/loop.ts'
import type { ForwardBatch, TokenizedGenerateReqInput } from '../../src/ipc/messages.ts'
import { conditionWaiters } from '../helpers/until.ts'

type Limits = ConstructorParameters<typeof SchedulerLoop>[0]

function harness(limits: Partial<Limits>) {
  const steps: ForwardBatch[] = []
  /** rids in the order they finished. */
  const finished: string[] = []
  /** until(pred) resolves once pred holds, checked after each step sent and each output. */
  const { until, check } = conditionWaiters()
  let loop: SchedulerLoop
  const io: LoopIo = {
    forward: (batch) => {
      steps.push(batch)
      const rids = batch.prefill.filter((p) => p.last).map((p) => p.rid)
      for (let n = 0; batch.decode.length > 0 && n < batch.decodeSteps; n++) rids.push(...batch.decode)
      setImmediate(() => loop.onForwardOutput({ type: 'forward_out', step: batch.step, tpRank: 0, allReduceMs: 0, rids, tokens: new Int32Array(rids.length).fill(5), failed: [], prefillMs: 0, decodeMs: 0 }))
      check()
    },
    output: (o) => {
      o.rids.forEach((rid, i) => o.finished[i] !== null && finished.push(rid))
      check()
    },
    error: () => {},
  }
  loop = new SchedulerLoop({ maxBatchSize: 4, maxQueue: 32, maxPrefillTokens: 64, maxTotalTokens: 1000, contextLength: 100, eosTokenIds: [0], tpSize: 1, depth: 1, decodeSteps: 1, ...limits }, io)
  void loop.run()
  return { loop, steps, finished, until }
}

const req = (rid: string, client: string, promptLen: number, maxTokens: number): TokenizedGenerateReqInput => ({
  type: 'tokenized', rid, trace: null, inputIds: new Int32Array(promptLen).fill(7), sampling: { temperature: 0, topP: 1, topK: 0, seed: null }, maxTokens, ignoreEos: false, arrivalMs: 0, client,
})

/** The step index at which each rid's first prefill chunk was sent (its admission). */
function admittedAt(steps: readonly ForwardBatch[]): Map<string, number> {
  const at = new Map<string, number>()
  steps.forEach((s, i) => s.prefill.forEach((p) => at.has(p.rid) || at.set(p.rid, i)))
  return at
}

for (const depth of [1, 2] as const) {
  t.test(`a later client is served before an earlier client's backlog (depth ${depth})`, async (t) => {
    const h = harness({ depth })
    const backlog = Array.from({ length: 8 }, (_, i) => `a${i}`)
    for (const rid of backlog) h.loop.submit(req(rid, 'client-a', 2, 20))
    await h.until(() => h.steps.length >= 1)
    for (const rid of ['b0', 'b1', 'b2']) h.loop.submit(req(rid, 'client-b', 4, 4))
    await h.until(() => h.finished.length === 11)
    const at = admittedAt(h.steps)
    const lastB = Math.max(at.get('b0')!, at.get('b1')!, at.get('b2')!)
    for (const rid of ['a4', 'a5', 'a6', 'a7']) t.ok(at.get(rid)! > lastB, `${rid} (A's backlog) admitted after all of B's`)
    t.ok(at.get('b0')! < h.steps.findIndex((s) => s.release.length > 0), 'b0 admitted while A held every slot, before any A sequence ended')
    t.ok(h.finished.indexOf('b0') < h.finished.indexOf('a0'), "b0 finishes before A's first sequence")
    for (const s of h.steps) t.ok(new Set([...s.prefill.map((p) => p.rid), ...s.decode]).size <= 4, `step ${s.step}: at most 4 sequences run`)
    t.equal(h.loop.running + h.loop.waiting.length, 0, 'everything done')
    h.loop.close()
  })
}

t.test('one client: first come, first served within the batch size, as without fairness', async (t) => {
  const h = harness({ depth: 2 })
  const rids = Array.from({ length: 8 }, (_, i) => `a${i}`)
  for (const rid of rids) h.loop.submit(req(rid, 'only', 2, 5))
  await h.until(() => h.finished.length === 8)
  const at = admittedAt(h.steps)
  t.same([...at.keys()], rids, 'admitted in arrival order')
  t.same(at.get('a4'), h.steps.findIndex((s) => s.release.length > 0), 'the fifth only when the first four are released')
  for (const s of h.steps) t.ok(s.prefill.length + s.decode.length <= 4, `step ${s.step}: within the batch`)
  h.loop.close()
})
