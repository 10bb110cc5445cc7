/**
 * The worker's logprobs, white-box: log_softmax of raw rows against a float64 reference (the sum of
 * exp is computed with a polynomial, not Math.exp), the top ids best first with ties by lower id, and
 * the sampled token's value equal to its own entry in the top list.
 */
import t from 'tap'
import { LogprobsRecorder } from '../../src/worker/logprobs.ts'
import { createRng } from '../../src/model/rng.ts'

const VOCAB = 1024

/** Within float32's precision of the reference (an ulp at 1,000 is 6e-5), floored at vLLM's -9999. */
const near = (got: number, want: number) => Math.abs(got - Math.max(want, -9999)) <= 1e-5 + 1.2e-7 * Math.abs(want)

/** log_softmax by the book, in float64. */
function reference(row: Float32Array): number[] {
  let max = -Infinity
  for (const v of row) if (v > max) max = v
  let sum = 0
  for (const v of row) sum += Math.exp(v - max)
  return Array.from(row, (v) => v - max - Math.log(sum))
}

function rows(): { name: string; row: Float32Array }[] {
  const rng = createRng(11)
  const rand = () => rng.next()
  const spread = (scale: number) => Float32Array.from({ length: VOCAB }, () => (rand() - 0.5) * scale)
  const peaked = spread(2)
  peaked[17] = 40
  const masked = spread(8)
  for (let i = 0; i < VOCAB; i += 3) masked[i] = -Infinity
  const huge = spread(3000)
  return [
    { name: 'narrow', row: spread(1) },
    { name: 'wide', row: spread(60) },
    { name: 'one token far ahead', row: peaked },
    { name: 'a third at -Infinity', row: masked },
    { name: 'values far below the max (exp underflows)', row: huge },
  ]
}

t.test('logprobs match a float64 log_softmax, and the top ids are the best, best first', async (t) => {
  for (const { name, row } of rows()) {
    const ref = reference(row)
    const rec = new LogprobsRecorder(20, undefined)
    // Offset into a longer buffer, as a batch's rows are.
    const batch = new Float32Array(VOCAB * 3)
    batch.set(row, VOCAB * 2)
    const sampled = 100
    rec.token(batch, VOCAB * 2, VOCAB, sampled)
    const lp = rec.take()!
    const expected = [...ref.keys()].sort((a, b) => ref[b]! - ref[a]! || a - b).slice(0, 20)
    t.same([...lp.topIds], expected, `${name}: top ids`)
    t.ok(
      expected.every((id, i) => near(lp.topLogprobs[i]!, ref[id]!)),
      `${name}: top logprobs as the reference's`,
    )
    t.ok(near(lp.logprob, ref[sampled]!), `${name}: the sampled token's (${lp.logprob} vs ${ref[sampled]})`)
    t.equal(lp.logprob, Math.fround(lp.logprob), `${name}: float32-exact, as the top list`)
    t.equal(rec.take(), null, 'each token is taken once')
  }
})

t.test("the sampled token's value is its own entry's in the top list", async (t) => {
  const { row } = rows()[0]!
  const rec = new LogprobsRecorder(5, undefined)
  const best = reference(row).reduce((b, v, i, all) => (v > all[b]! ? i : b), 0)
  rec.token(row, 0, VOCAB, best)
  const lp = rec.take()!
  t.equal(lp.topIds[0], best)
  t.equal(lp.logprob, lp.topLogprobs[0])
})

t.test('top 0 gives the logprob alone; a top beyond the vocabulary gives every id', async (t) => {
  const row = Float32Array.of(1, 3, 2, 3)
  const none = new LogprobsRecorder(0, undefined)
  none.token(row, 0, 4, 2)
  const lp = none.take()!
  t.equal(lp.topIds.length, 0)
  t.ok(near(lp.logprob, reference(row)[2]!))
  const all = new LogprobsRecorder(20, undefined)
  all.token(row, 0, 4, 0)
  t.same([...all.take()!.topIds], [1, 3, 2, 0], 'ties by lower id')
})
