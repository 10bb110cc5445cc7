/**
 * OpenAI's and vLLM's sampling parameters through the real server with the openai client:
 * logit_bias, stop_token_ids, min_tokens, min_p, presence / frequency / repetition penalties, their
 * validation (OpenAI's 400 naming `param`), and their gen_ai attributes on llm_request.
 */
import t from 'tap'
import OpenAI from 'openai'
import { startServer, TEST_CACHE_DIR } from '../../harness/server.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { ensureModel } from '../../src/model/build.ts'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ args: ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint] })
t.teardown(() => server.stop())
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

// The served model's own tokenizer, to know which token ids the texts are.
const tok = new TextTokenizer(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR }))
const PROMPT = 'Once upon a time'
const single = (text: string): number => {
  const ids = tok.encode(text, false)
  if (ids.length !== 1) throw new Error(`${JSON.stringify(text)} is ${ids.length} tokens`)
  return ids[0]!
}
const X = single(' the')
const Y = single(' and')

const complete = (over: Record<string, unknown>) =>
  client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 24, temperature: 0, ...over } as OpenAI.CompletionCreateParamsNonStreaming)

t.test('logit_bias: +100 forces a token, -100 bans one; chat takes it too, streamed', async (t) => {
  const x = ' the'
  const forced = await complete({ max_tokens: 5, logit_bias: { [X]: 100 } })
  t.equal(forced.choices[0]!.text, x.repeat(5), 'five times the forced token')
  t.equal(forced.usage?.completion_tokens, 5)
  const plain = await complete({ max_tokens: 1 })
  // The greedy first token, banned: another one comes.
  const firstId = single(plain.choices[0]!.text)
  const banned = await complete({ max_tokens: 1, logit_bias: { [firstId]: -100 } })
  t.not(banned.choices[0]!.text, plain.choices[0]!.text)

  const stream = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0, logit_bias: { [X]: 100 }, stream: true })
  let text = ''
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
  t.equal(text, x.repeat(4), 'chat, streamed: the forced token four times')
})

t.test('stop_token_ids: the token ends the request with finish reason stop; its text is not returned, it counts in usage', async (t) => {
  const r = await complete({ max_tokens: 10, logit_bias: { [Y]: 100 }, stop_token_ids: [X] })
  t.equal(r.choices[0]!.finish_reason, 'length', 'X never comes while Y is forced')
  const s = await complete({ max_tokens: 10, logit_bias: { [X]: 100 }, stop_token_ids: [X] })
  t.equal(s.choices[0]!.finish_reason, 'stop')
  t.equal(s.choices[0]!.text, '', "the stop token's text is left out")
  t.equal(s.usage?.completion_tokens, 1)
  const streamed = await client.completions.create({
    model: 'default',
    prompt: PROMPT,
    max_tokens: 10,
    temperature: 0,
    logit_bias: { [X]: 100 },
    stop_token_ids: [X],
    stream: true,
  } as unknown as OpenAI.CompletionCreateParamsStreaming)
  let finish: string | null = null
  for await (const chunk of streamed) finish = chunk.choices[0]?.finish_reason ?? finish
  t.equal(finish, 'stop', 'streamed too')
})

t.test('min_tokens holds stop token ids back until that many tokens came', async (t) => {
  const r = await complete({ max_tokens: 10, logit_bias: { [X]: 100 }, stop_token_ids: [X], min_tokens: 3 })
  t.equal(r.choices[0]!.finish_reason, 'stop')
  t.equal(r.usage?.completion_tokens, 4, 'three other tokens, then the stop token')
  t.notOk(tok.encode(r.choices[0]!.text, false).includes(X), 'none of the three is the held-back token')
})

t.test('min_tokens holds stop strings back too (as vLLM): only a match ending after that many tokens stops', async (t) => {
  const forced = { max_tokens: 10, logit_bias: { [X]: 100 }, stop: [' the'] }
  const early = await complete(forced)
  t.equal(early.choices[0]!.text, '', 'without min_tokens the first token is the stop string')
  t.equal(early.usage?.completion_tokens, 1)
  const held = await complete({ ...forced, min_tokens: 3 })
  t.equal(held.choices[0]!.finish_reason, 'stop')
  t.equal(held.choices[0]!.text, ' the the the', 'the first three tokens are text, the fourth is the stop string')
  t.equal(held.usage?.completion_tokens, 4)
  // A stop string that begins in the first min_tokens tokens and ends after them stops the request.
  const straddling = await complete({ ...forced, stop: ['e th'], min_tokens: 2 })
  t.equal(straddling.choices[0]!.text, ' the th', '"e th" of tokens 2 and 3, not the one inside tokens 1 and 2')
  t.equal(straddling.usage?.completion_tokens, 3)
  // Streamed: the same text arrives in deltas, and nothing of the stop string.
  let text = ''
  let finish: string | null = null
  for await (const chunk of await client.completions.create({ model: 'default', prompt: PROMPT, temperature: 0, ...forced, min_tokens: 3, stream: true } as OpenAI.CompletionCreateParamsStreaming)) {
    text += chunk.choices[0]?.text ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
  }
  t.equal(text, ' the the the')
  t.equal(finish, 'stop')
})

t.test('min_p 1 keeps only the best token: sampling at any temperature and seed gives the greedy text', async (t) => {
  const greedy = await complete({})
  for (const seed of [1, 2]) {
    const r = await complete({ temperature: 1.5, seed, min_p: 1 })
    t.equal(r.choices[0]!.text, greedy.choices[0]!.text, `seed ${seed}`)
  }
  const loose = await Promise.all([1, 2, 3, 4].map((seed) => complete({ temperature: 1.5, seed })))
  t.ok(
    loose.some((r) => r.choices[0]!.text !== greedy.choices[0]!.text),
    'without min_p the same seeds leave the greedy path',
  )
})

t.test('presence, frequency and repetition penalties change greedy text; their neutral values do not; seeds still reproduce', async (t) => {
  const greedy = (await complete({ max_tokens: 40 })).choices[0]!.text
  const neutral = await complete({ max_tokens: 40, presence_penalty: 0, frequency_penalty: 0, repetition_penalty: 1 })
  t.equal(neutral.choices[0]!.text, greedy, 'neutral values: the same text')
  for (const over of [{ presence_penalty: 2 }, { frequency_penalty: 2 }, { repetition_penalty: 1.8 }, { presence_penalty: -2, frequency_penalty: -2 }]) {
    const r = await complete({ max_tokens: 40, ...over })
    t.not(r.choices[0]!.text, greedy, JSON.stringify(over))
  }
  const seeded = (seed: number) => complete({ max_tokens: 30, temperature: 1, seed, presence_penalty: 1, frequency_penalty: 0.5, repetition_penalty: 1.2, min_p: 0.05 })
  const [a, b] = await Promise.all([seeded(77), seeded(77)])
  t.equal(a.choices[0]!.text, b.choices[0]!.text, 'the same seed with penalties: the same text')
})

t.test("bad values get OpenAI's 400 naming the field", async (t) => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ presence_penalty: 2.5 }, 'presence_penalty', 'SPANSERVE_ERR_VALIDATION'],
    [{ frequency_penalty: -3 }, 'frequency_penalty', 'SPANSERVE_ERR_VALIDATION'],
    [{ repetition_penalty: 0 }, 'repetition_penalty', 'SPANSERVE_ERR_VALIDATION'],
    [{ min_p: 1.5 }, 'min_p', 'SPANSERVE_ERR_VALIDATION'],
    [{ min_tokens: -1 }, 'min_tokens', 'SPANSERVE_ERR_VALIDATION'],
    [{ min_tokens: 30, max_tokens: 10 }, 'min_tokens', 'SPANSERVE_ERR_VALIDATION'],
    [{ stop_token_ids: [-1] }, 'stop_token_ids.0', 'SPANSERVE_ERR_VALIDATION'],
    [{ stop_token_ids: [10_000_000] }, 'stop_token_ids', 'SPANSERVE_ERR_TOKEN_ID'],
    [{ logit_bias: { abc: 1 } }, 'logit_bias', 'SPANSERVE_ERR_VALIDATION'],
    [{ logit_bias: { 5: 101 } }, 'logit_bias.5', 'SPANSERVE_ERR_VALIDATION'],
    [{ logit_bias: { 10000000: 1 } }, 'logit_bias', 'SPANSERVE_ERR_TOKEN_ID'],
  ]
  for (const [over, param, code] of cases) {
    try {
      await complete(over)
      t.fail(`${JSON.stringify(over)} was accepted`)
    } catch (err) {
      const e = err as InstanceType<typeof OpenAI.APIError>
      t.equal(e.status, 400, `${JSON.stringify(over)}: 400`)
      t.equal(e.param, param, `${JSON.stringify(over)}: param`)
      t.equal(e.code, code, `${JSON.stringify(over)}: code`)
      t.equal(e.type, 'invalid_request_error')
    }
  }
})

t.test('llm_request carries gen_ai.request.presence_penalty, frequency_penalty and seed; a request that uses none carries none', async (t) => {
  const withPenalties = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 3, temperature: 1, seed: 42, presence_penalty: 0.5, frequency_penalty: -0.25 }).withResponse()
  const plain = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 3, temperature: 0 }).withResponse()
  const traceOf = (h: Headers) => h.get('traceparent')!.split('-')[1]!
  const a = traceOf(withPenalties.response.headers)
  const b = traceOf(plain.response.headers)
  const spans = await receiver.waitForSpans((s) => [a, b].every((id) => s.some((x) => x.traceId === id && x.name === 'llm_request')), 20_000)
  const root = (id: string) => spans.find((x) => x.traceId === id && x.name === 'llm_request')!.attributes
  t.equal(root(a)['gen_ai.request.presence_penalty'], 0.5)
  t.equal(root(a)['gen_ai.request.frequency_penalty'], -0.25)
  t.equal(root(a)['gen_ai.request.seed'], 42)
  t.notOk('gen_ai.request.presence_penalty' in root(b))
  t.notOk('gen_ai.request.frequency_penalty' in root(b))
  t.notOk('gen_ai.request.seed' in root(b))
})
