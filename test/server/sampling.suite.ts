/** Sampling through the real pipeline: seeds reproduce, and batching does not change greedy output. */
import t from 'tap'
import OpenAI from 'openai'
import { startServer } from '../../harness/server.ts'
import { OBSERVED, sharedServer } from '../helpers/shared-server.ts'

// OBSERVED logs at debug, so the scheduler reports each step's batch size and the test can see batching.
const server = await sharedServer(OBSERVED)
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

const PROMPTS = [
  'Once upon a time',
  'The little girl',
  'In the morning',
  'The old man said',
  'She opened the door',
  'The king',
  'It was a cold night',
  'A small bird',
  'The river',
  'When the sun rose',
  'He walked to the',
  'The children',
  'There was a',
  'The forest was',
  'They ate',
  'At the end of the day',
]

t.test('the same seed gives the same sampled text; another seed usually differs', async (t) => {
  const ask = (seed: number) => client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 24, temperature: 1, top_p: 0.95, seed })
  const a = await ask(1234)
  const b = await ask(1234)
  t.equal(a.choices[0]!.text, b.choices[0]!.text)
  const others = await Promise.all([1, 2, 3, 4].map(ask))
  t.ok(
    others.some((o) => o.choices[0]!.text !== a.choices[0]!.text),
    'different seeds explore different continuations',
  )
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

t.test('the overlap schedule (default) and continuous decode steps give what lockstep gives: text, finish reason and usage, stop strings included', async (t) => {
  const lockstep = await startServer({ args: ['--disable-overlap-schedule'] })
  t.teardown(() => lockstep.stop())
  const multi = await startServer({ args: ['--num-continuous-decode-steps', '4', '--log-level', 'debug'] })
  t.teardown(() => multi.stop())
  const clientOf = (s: { url: string }) => new OpenAI({ baseURL: s.url + '/v1', apiKey: 'unused', maxRetries: 0 })
  // A stop string ends a request at a token the scheduler could not foresee: under overlap one more
  // step has already been sent for it, and with continuous decode steps several; their tokens must not show.
  const asks = PROMPTS.slice(0, 8).map((prompt, i) => ({ model: 'default', prompt, max_tokens: 10 + 3 * i, temperature: 0, ...(i % 2 ? { stop: [' the', '.'] } : {}) }))
  const [base, ...others] = await Promise.all([client, clientOf(lockstep), clientOf(multi)].map((c) => Promise.all(asks.map((q) => c.completions.create(q)))))
  for (const [name, b] of [
    ['lockstep', others[0]!],
    ['continuous decode steps', others[1]!],
  ] as const) {
    let stopped = 0
    for (let i = 0; i < asks.length; i++) {
      t.equal(base![i]!.choices[0]!.text, b[i]!.choices[0]!.text, `${name}, prompt ${i}: the same text`)
      t.equal(base![i]!.choices[0]!.finish_reason, b[i]!.choices[0]!.finish_reason, `${name}, prompt ${i}: the same finish reason`)
      t.same(base![i]!.usage, b[i]!.usage, `${name}, prompt ${i}: the same usage`)
      if (b[i]!.choices[0]!.finish_reason === 'stop') stopped++
    }
    t.ok(stopped > 0, `${name}: some requests ended on a stop string (${stopped})`)
  }
  // Tokens that come back several at a time still stream one chunk per token, in order.
  const stream = await clientOf(multi).completions.create({ ...asks[6]!, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let chunks = 0
  let usage: { completion_tokens: number } | null = null
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage
    if (chunk.choices.length === 0) continue
    text += chunk.choices[0]!.text
    chunks++
  }
  t.equal(text, base![6]!.choices[0]!.text, 'the streamed text is the whole text')
  t.equal(chunks, usage?.completion_tokens, 'one chunk per generated token')
  t.ok(
    multi.logs.some((l) => l.msg === 'step' && (l.decode_steps as number) === 4),
    'decode-only steps ran 4 decode steps each',
  )
})
