/** Sampling through the real pipeline: seeds reproduce, and batching does not change greedy output. */
import t from 'tap'
import OpenAI from 'openai'
import { startServer } from '../helpers/server.ts'

// Debug logging makes the scheduler report each step's batch size, so the test can see batching.
const server = await startServer({ args: ['--log-level', 'debug'] })
t.teardown(() => server.stop())
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

const PROMPTS = [
  'Once upon a time', 'The little girl', 'In the morning', 'The old man said', 'She opened the door',
  'The king', 'It was a cold night', 'A small bird', 'The river', 'When the sun rose',
  'He walked to the', 'The children', 'There was a', 'The forest was', 'They ate', 'At the end of the day',
]

t.test('the same seed gives the same sampled text; another seed usually differs', async (t) => {
  const ask = (seed: number) => client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 24, temperature: 1, top_p: 0.95, seed })
  const a = await ask(1234)
  const b = await ask(1234)
  t.equal(a.choices[0]!.text, b.choices[0]!.text)
  const others = await Promise.all([1, 2, 3, 4].map(ask))
  t.ok(others.some((o) => o.choices[0]!.text !== a.choices[0]!.text), 'different seeds explore different continuations')
})

t.test('greedy: 16 prompts decoded together give token for token what each gives alone', async (t) => {
  const alone = []
  for (const [i, prompt] of PROMPTS.entries()) {
    alone.push(await client.completions.create({ model: 'default', prompt, max_tokens: 12 + i, temperature: 0 }))
  }
  // Different lengths make the batch ragged: the padding must not leak into any row.
  const together = await Promise.all(PROMPTS.map((prompt, i) => client.completions.create({ model: 'default', prompt, max_tokens: 12 + i, temperature: 0 })))
  for (let i = 0; i < PROMPTS.length; i++) {
    t.equal(together[i]!.choices[0]!.text, alone[i]!.choices[0]!.text, `prompt ${i}: the same text`)
    t.equal(together[i]!.choices[0]!.finish_reason, alone[i]!.choices[0]!.finish_reason, `prompt ${i}: the same finish reason`)
    t.same(together[i]!.usage, alone[i]!.usage, `prompt ${i}: the same usage`)
  }
  const widest = Math.max(...server.logs.filter((l) => l.msg === 'step').map((l) => l.decode as number))
  t.ok(widest >= 8, `sequences were decoded together (widest decode step: ${widest})`)
})

t.test('the overlap schedule (default) gives what lockstep gives: text, finish reason and usage, stop strings included', async (t) => {
  const lockstep = await startServer({ args: ['--disable-overlap-schedule'] })
  t.teardown(() => lockstep.stop())
  const other = new OpenAI({ baseURL: lockstep.url + '/v1', apiKey: 'unused', maxRetries: 0 })
  // A stop string ends a request at a token the scheduler could not foresee: under overlap one more
  // step has already been sent for it, and its token must not show.
  const asks = PROMPTS.slice(0, 8).map((prompt, i) => ({ model: 'default', prompt, max_tokens: 10 + 3 * i, temperature: 0, ...(i % 2 ? { stop: [' the', '.'] } : {}) }))
  const [a, b] = await Promise.all([Promise.all(asks.map((q) => client.completions.create(q))), Promise.all(asks.map((q) => other.completions.create(q)))])
  let stopped = 0
  for (let i = 0; i < asks.length; i++) {
    t.equal(a[i]!.choices[0]!.text, b[i]!.choices[0]!.text, `prompt ${i}: the same text`)
    t.equal(a[i]!.choices[0]!.finish_reason, b[i]!.choices[0]!.finish_reason, `prompt ${i}: the same finish reason`)
    t.same(a[i]!.usage, b[i]!.usage, `prompt ${i}: the same usage`)
    if (a[i]!.choices[0]!.finish_reason === 'stop') stopped++
  }
  t.ok(stopped > 0, `some requests ended on a stop string (${stopped})`)
})
