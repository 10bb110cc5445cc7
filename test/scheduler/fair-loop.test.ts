/**
 * Fair sharing in the batching loop, against a scripted worker (as loop.test.ts): client A queues
 * more sequences than the batch holds, client B arrives after A's first step, and B is admitted
 * and served before A's backlog, the batch never running more than --max-batch-size sequences in
 * a step. Orders of events only: no timing.
 */
import t from 'tap'
import { admittedAt, harness, req } from '../helpers/scripted-loop.ts'

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
  t.same(
    at.get('a4'),
    h.steps.findIndex((s) => s.release.length > 0),
    'the fifth only when the first four are released',
  )
  for (const s of h.steps) t.ok(s.prefill.length + s.decode.length <= 4, `step ${s.step}: within the batch`)
  h.loop.close()
})
