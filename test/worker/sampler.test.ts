/**
 * The worker's token sampler, white-box: greedy, top-k / top-p, seeds, a batch of rows with different
 * parameters, and the logit adjustments (penalties, logit_bias, min_tokens, min_p) with the tokens
 * each sequence accepts.
 */
import t from 'tap'
import { Sampler } from '../../src/worker/sampler.ts'
import type { SamplingParams } from '../../src/sampling/params.ts'
import { fakeLogits } from '../../harness/sampling.ts'

const VOCAB = 1000
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }
const random = (over: Partial<SamplingParams> = {}): SamplingParams => ({ temperature: 1, topP: 1, topK: 0, seed: 7, ...over })

/** Logits with the given values on the first ids and `rest` everywhere else. */
function logitsOf(values: number[], rest = -10, vocab = VOCAB): Float32Array {
  const out = new Float32Array(vocab).fill(rest)
  out.set(values)
  return out
}

function drawMany(s: Sampler, logits: Float32Array, n: number): number[] {
  return Array.from({ length: n }, () => s.sample(logits, 0, logits.length))
}

t.test('greedy takes the best logit, the lowest id on a tie, whatever the seed', async (t) => {
  const logits = fakeLogits(VOCAB, 3)
  let best = 0
  for (let i = 1; i < VOCAB; i++) if (logits[i]! > logits[best]!) best = i
  t.equal(new Sampler(greedy).sample(logits, 0, VOCAB), best)
  t.equal(new Sampler({ ...greedy, seed: 99, topK: 5, topP: 0.5 }).sample(logits, 0, VOCAB), best)
  t.equal(new Sampler(greedy).sample(logitsOf([1, 3, 3, 2]), 0, VOCAB), 1, 'tie: the lower id')
})

t.test('top-k draws only among the k best; top-p only within the smallest prefix reaching p', async (t) => {
  const logits = fakeLogits(VOCAB, 5)
  const ranked = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b)
  const top3 = new Set(ranked.slice(0, 3))
  const k3 = drawMany(new Sampler(random({ topK: 3, temperature: 2 })), logits, 300)
  t.ok(
    k3.every((x) => top3.has(x)),
    'top_k=3: only the 3 best',
  )
  t.equal(new Set(k3).size, 3, 'top_k=3 at a high temperature: each of the 3 comes up')
  t.same(new Set(drawMany(new Sampler(random({ topK: 1 })), logits, 50)), new Set([ranked[0]]), 'top_k=1 is greedy')

  // Probabilities 0.5, 0.3, 0.2 (and nothing else to speak of).
  const three = logitsOf([Math.log(0.5), Math.log(0.3), Math.log(0.2)], -1e9)
  t.same(new Set(drawMany(new Sampler(random({ topP: 0.5 })), three, 200)), new Set([0]), 'top_p=0.5: the best alone reaches it')
  t.same(new Set(drawMany(new Sampler(random({ topP: 0.7 })), three, 400)), new Set([0, 1]), 'top_p=0.7: the best two')
  t.same(new Set(drawMany(new Sampler(random({ topP: 1 })), three, 400)), new Set([0, 1, 2]), 'top_p=1: all three')
  const counts = [0, 0, 0]
  for (const x of drawMany(new Sampler(random({ seed: 11 })), three, 4000)) counts[x]!++
  t.ok(Math.abs(counts[0]! / 4000 - 0.5) < 0.05 && Math.abs(counts[2]! / 4000 - 0.2) < 0.05, `draws follow the probabilities (${counts})`)
})

t.test('the same seed gives the same tokens; another seed other tokens; draws already made are skipped', async (t) => {
  const rows = [1, 2, 3, 4].map((s) => fakeLogits(VOCAB, s))
  const run = (p: SamplingParams, n = 40) => {
    const s = new Sampler(p)
    return Array.from({ length: n }, (_, i) => s.sample(rows[i % 4]!, 0, VOCAB))
  }
  for (const over of [{}, { topK: 40 }, { topP: 0.9 }, { temperature: 0.7, topK: 50, topP: 0.95 }]) {
    t.same(run(random({ ...over, seed: 1234 })), run(random({ ...over, seed: 1234 })), `seed 1234 twice, ${JSON.stringify(over)}`)
    t.not(run(random({ ...over, seed: 1234 })).join(), run(random({ ...over, seed: 4321 })).join(), `seeds 1234 and 4321 differ, ${JSON.stringify(over)}`)
  }
  // A resumed request: after 10 tokens, a sampler told those 10 draws were made goes on identically.
  const whole = run(random({ seed: 5 }))
  const resumed = new Sampler(random({ seed: 5, draws: 10 }))
  t.same(
    Array.from({ length: 30 }, (_, i) => resumed.sample(rows[(i + 10) % 4]!, 0, VOCAB)),
    whole.slice(10),
  )
})

t.test('a batch of rows with different parameters: each row draws what it draws alone', async (t) => {
  const params = [
    greedy,
    random({ seed: 1 }),
    random({ seed: 2, topK: 20 }),
    random({ seed: 3, topP: 0.8, presencePenalty: 1.5 }),
    random({ seed: 4, minP: 0.1, logitBias: [[17, 30]] }),
    { ...greedy, repetitionPenalty: 1.3, promptIds: [1, 2, 3] },
  ]
  const B = params.length
  const batches = Array.from({ length: 12 }, (_, step) => {
    const buf = new Float32Array(B * VOCAB)
    for (let r = 0; r < B; r++) buf.set(fakeLogits(VOCAB, 100 * step + r), r * VOCAB)
    return buf
  })
  const together = params.map((p) => new Sampler(p))
  const alone = params.map((p) => new Sampler(p))
  for (const buf of batches) {
    const copy = buf.slice()
    for (let r = 0; r < B; r++) {
      const a = together[r]!.sample(buf, r * VOCAB, VOCAB)
      const b = alone[r]!.sample(buf.slice(r * VOCAB, (r + 1) * VOCAB), 0, VOCAB)
      t.equal(a, b, `row ${r}`)
    }
    t.same(buf, copy, "the model's logits are left as they were")
  }
})

t.test('presence and frequency penalties (OpenAI): a generated token loses p once, f per time', async (t) => {
  // Token 0 leads token 1 by 0.5: greedy repeats token 0 until a penalty outweighs the lead.
  const logits = logitsOf([3, 2.5, 0])
  t.same(drawMany(new Sampler(greedy), logits, 4), [0, 0, 0, 0], 'no penalty')
  t.same(drawMany(new Sampler({ ...greedy, presencePenalty: 0.6 }), logits, 4), [0, 1, 0, 0], 'presence 0.6: 3-0.6 < 2.5; once both came, each has lost 0.6 alone: 2.4 > 1.9')
  t.same(drawMany(new Sampler({ ...greedy, presencePenalty: 0.4 }), logits, 4), [0, 0, 0, 0], 'presence 0.4: only once, 2.6 > 2.5')
  t.same(drawMany(new Sampler({ ...greedy, frequencyPenalty: 0.2 }), logits, 6), [0, 0, 0, 1, 0, 1], 'frequency 0.2: 3-0.6 = 2.4 < 2.5 after three; then by turns')
  t.same(drawMany(new Sampler({ ...greedy, presencePenalty: -1 }), logitsOf([2.5, 3]), 3), [1, 1, 1], 'a negative penalty favours repeats')
})

t.test("repetition penalty (vLLM): prompt and generated tokens' logits divided when positive, multiplied when negative", async (t) => {
  t.same(drawMany(new Sampler({ ...greedy, repetitionPenalty: 2, promptIds: [0] }), logitsOf([4, 3]), 2), [1, 0], 'token 0 from the prompt: 4/2 < 3; then token 1 generated: 3/2 < 2')
  t.same(drawMany(new Sampler({ ...greedy, repetitionPenalty: 2, promptIds: [0, 1] }), logitsOf([-1, -1.5, -3]), 1), [0], 'negative logits: -2 > -3 (multiplied)')
  t.same(drawMany(new Sampler({ ...greedy, repetitionPenalty: 2, promptIds: [0, 1] }), logitsOf([-1, -1.5, -1.9]), 1), [2], '-2, -3 < -1.9')
  t.same(drawMany(new Sampler({ ...greedy, repetitionPenalty: 0.5, promptIds: [1] }), logitsOf([4, 3]), 1), [1], 'below 1 it favours them: 3/0.5 > 4')
})

t.test('logit_bias adds to the logits; +100 forces a token, -100 bans it', async (t) => {
  const logits = fakeLogits(VOCAB, 9)
  t.same(new Set(drawMany(new Sampler(random({ logitBias: [[123, 100]] })), logits, 50)), new Set([123]))
  const best = new Sampler(greedy).sample(logits, 0, VOCAB)
  t.not(new Sampler({ ...greedy, logitBias: [[best, -100]] }).sample(logits, 0, VOCAB), best)
  t.notOk(drawMany(new Sampler(random({ logitBias: [[best, -100]], seed: 3 })), logits, 200).includes(best))
})

t.test('min_tokens holds EOS and stop token ids back until that many tokens were generated', async (t) => {
  const eos = 2
  const logits = logitsOf([1, 0, 5])
  const p: SamplingParams = { ...greedy, minTokens: 3, minTokensStopIds: [eos] }
  t.same(drawMany(new Sampler(p), logits, 5), [0, 0, 0, eos, eos])
  // A resumed request's tokens count: 2 generated before, so 1 more is held.
  t.same(drawMany(new Sampler({ ...p, generatedIds: [0, 0] }), logits, 2), [0, eos])
})

t.test('min_p drops tokens less likely than min_p times the best', async (t) => {
  // Probabilities 0.5, 0.3, 0.2: min_p 0.5 keeps those ≥ 0.25.
  const three = logitsOf([Math.log(0.5), Math.log(0.3), Math.log(0.2)], -1e9)
  t.same(new Set(drawMany(new Sampler(random({ minP: 0.5 })), three, 400)), new Set([0, 1]))
  t.same(new Set(drawMany(new Sampler(random({ minP: 0.3 })), three, 400)), new Set([0, 1, 2]))
  // At temperature 2 the ratios flatten (sqrt): 0.2 / 0.5 -> 0.63, kept by min_p 0.5.
  t.same(new Set(drawMany(new Sampler(random({ minP: 0.5, temperature: 2 })), three, 400)), new Set([0, 1, 2]))
})

t.test('a sampler accepts each token it draws, and tokens accepted from outside count too', async (t) => {
  const s = new Sampler({ ...greedy, presencePenalty: 1 })
  s.accept(0)
  t.equal(s.sample(logitsOf([3, 2.5]), 0, VOCAB), 1, 'token 0, accepted before, is penalised')
})
