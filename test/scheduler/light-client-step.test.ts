/**
 * Short steps for a light client beside a heavy one (--heavy-client-step-size): while a client
 * holding more sequences than the share runs beside a lighter one, a step runs at most the share of
 * each client's sequences, so the light client's next token waits for a short step; alone, or
 * with no light client around, the whole batch runs as before.
 */
import t from 'tap'
import { VirtualTokenCounter } from '../../src/scheduler/fairness.ts'
import { harness, req } from '../helpers/scripted-loop.ts'

t.test('stepLimit: only a heavy client beside a light one (active, or idle within the window) limits the step', async (t) => {
  const f = new VirtualTokenCounter()
  const admit = (client: string, n: number) => {
    for (let i = 0; i < n; i++) {
      f.enter(client)
      f.admitted(client, 1)
    }
  }
  admit('heavy', 10)
  t.equal(f.stepLimit(0, 2000, 4), null, 'a heavy client alone runs the whole batch')
  admit('light', 1)
  t.equal(f.stepLimit(0, 2000, 4), 5, "beside a light one: 4 of the heavy client's, 1 of the light one's")
  f.leave('light', true)
  const idleAt = performance.now()
  t.equal(f.stepLimit(idleAt + 100, 2000, 4), 4, 'the light client between requests still counts')
  t.equal(f.stepLimit(idleAt + 2500, 2000, 4), null, 'past the window it does not')
  admit('heavy-2', 6)
  t.equal(f.stepLimit(idleAt + 2500, 2000, 4), null, 'two heavy clients and no light one: the whole batch, split fairly as before')
  const many = new VirtualTokenCounter()
  for (let i = 0; i < 16; i++) {
    many.enter(`user-${i}`)
    many.admitted(`user-${i}`, 1)
  }
  t.equal(many.stepLimit(0, 2000, 4), null, 'many light clients: no limit')
})

for (const share of [2, 0]) {
  t.test(`a heavy client's steps ${share > 0 ? `run ${share} of its sequences` : 'run whole'} while a light client is served (--heavy-client-step-size ${share})`, async (t) => {
    const h = harness({ maxBatchSize: 16, depth: 1, heavyClientStepSize: share })
    for (let i = 0; i < 12; i++) h.loop.submit(req(`a${i}`, 'heavy', 2, 30))
    await h.until(() => h.steps.length >= 2)
    const heavyAlone = h.steps[1]!
    t.equal(heavyAlone.decode.length, 12, 'alone, the heavy client runs all 12 sequences a step')
    const before = h.steps.length
    h.loop.submit(req('b0', 'light', 3, 3))
    await h.until(() => h.finished.includes('b0'))
    const during = h.steps.slice(before).filter((s) => s.decode.includes('b0') || s.prefill.some((p) => p.rid === 'b0'))
    t.ok(during.length >= 3, 'the light request ran in several steps')
    for (const s of during) {
      const heavyRun = s.decode.filter((rid) => rid.startsWith('a')).length
      if (share > 0) t.ok(heavyRun <= share, `step ${s.step}: ${heavyRun} of the heavy client's sequences`)
      else t.equal(heavyRun, 12, `step ${s.step}: all of the heavy client's sequences`)
    }
    await h.until(() => h.finished.length === 13)
    const limited = h.loop.takeStats().limitedSteps ?? 0
    if (share > 0) t.ok(limited >= during.length, `the limited steps are counted (${limited}), for /metrics`)
    else t.equal(limited, 0, 'no step counted as limited')
    t.equal(h.loop.running + h.loop.waiting.length, 0, 'everything done')
    h.loop.close()
  })
}
