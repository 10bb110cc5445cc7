/**
 * Logprobs through the real server with the openai client: chat's logprobs / top_logprobs (OpenAI's
 * shape, streamed too), completions' logprobs and echo (the legacy shape, the prompt's tokens first
 * with a null first logprob), their bounds (OpenAI's 400 naming `param`), and no KV left held after.
 */
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { OBSERVED, sharedServer } from '../helpers/shared-server.ts'
import { metricsOnceKvFreed } from '../helpers/prometheus.ts'

const server = await sharedServer(OBSERVED)
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const MESSAGES = [{ role: 'user' as const, content: 'Tell me a story about a cat.' }]
const PROMPT = 'Once upon a time'

/** Logits of the same tokens differ in the last float32 bits with the batch they ran in (padding, batch size). */
const close = (a: readonly (number | null)[], b: readonly (number | null)[]) => a.length === b.length && a.every((v, i) => (v === null ? b[i] === null : Math.abs(v - b[i]!) < 1e-4))

interface ChatLogprob {
  token: string
  logprob: number
  bytes: number[] | null
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[]
}

function checkEntry(t: Test, e: ChatLogprob, top: number, greedy: boolean): void {
  t.ok(e.logprob <= 0, 'a logprob is at most 0')
  t.same(e.bytes, [...Buffer.from(e.token, 'utf8')], 'bytes are the token text in UTF-8')
  t.equal(e.top_logprobs.length, top, `top_logprobs has ${top} entries`)
  for (let i = 1; i < e.top_logprobs.length; i++) t.ok(e.top_logprobs[i - 1]!.logprob >= e.top_logprobs[i]!.logprob, 'sorted descending')
  if (greedy && top > 0) {
    t.equal(e.top_logprobs[0]!.logprob, e.logprob, 'greedy: the sampled token is the most likely one')
    t.ok(
      e.top_logprobs.some((x) => x.token === e.token && x.logprob === e.logprob),
      'and is among the top',
    )
  }
}

t.test('chat: one entry per completion token, top_logprobs of the asked length, streamed equals whole', async (t) => {
  const whole = await client.chat.completions.create({ model: 'default', messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 5 })
  const choice = whole.choices[0]!
  const content = choice.logprobs!.content! as unknown as ChatLogprob[]
  t.equal(content.length, whole.usage!.completion_tokens, 'an entry per completion token')
  for (const e of content) checkEntry(t, e, 5, true)
  t.equal(content.map((e) => e.token).join(''), choice.message.content, 'the tokens spell the text')

  const stream = await client.chat.completions.create({ model: 'default', messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 5, stream: true })
  const streamed: ChatLogprob[] = []
  for await (const chunk of stream) streamed.push(...((chunk.choices[0]?.logprobs?.content ?? []) as unknown as ChatLogprob[]))
  t.same(
    streamed.map((e) => e.token),
    content.map((e) => e.token),
    "streamed: the whole answer's tokens, chunk by chunk",
  )
  t.ok(
    close(
      streamed.map((e) => e.logprob),
      content.map((e) => e.logprob),
    ),
    'and their logprobs',
  )
  t.same(
    streamed.map((e) => e.top_logprobs.map((x) => x.token)),
    content.map((e) => e.top_logprobs.map((x) => x.token)),
    'and their top tokens',
  )

  const noTop = await client.chat.completions.create({ model: 'default', messages: MESSAGES, max_tokens: 4, temperature: 0, logprobs: true })
  for (const e of noTop.choices[0]!.logprobs!.content! as unknown as ChatLogprob[]) checkEntry(t, e, 0, true)
  const twenty = await client.chat.completions.create({ model: 'default', messages: MESSAGES, max_tokens: 3, temperature: 0.8, seed: 7, logprobs: true, top_logprobs: 20 })
  for (const e of twenty.choices[0]!.logprobs!.content! as unknown as ChatLogprob[]) checkEntry(t, e, 20, false)

  const plain = await client.chat.completions.create({ model: 'default', messages: MESSAGES, max_tokens: 4, temperature: 0 })
  t.equal(plain.choices[0]!.logprobs, null, 'without logprobs: null')
})

t.test('completions: the legacy shape, and echo with the prompt first, its first logprob null', async (t) => {
  const r = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3 })
  const lp = r.choices[0]!.logprobs!
  t.equal(lp.tokens!.length, r.usage!.completion_tokens, 'a token per completion token')
  t.equal(lp.token_logprobs!.length, lp.tokens!.length)
  t.equal(lp.tokens!.join(''), r.choices[0]!.text, 'the tokens spell the text')
  lp.token_logprobs!.forEach((v, i) => {
    t.ok(v !== null && v <= 0, 'logprob ≤ 0')
    const top = lp.top_logprobs![i]!
    t.ok(Object.keys(top).length >= 3, 'at least the 3 asked (the sampled token is always in)')
    t.equal(Math.max(...Object.values(top)), v, 'greedy: the sampled token is the best')
  })
  let offset = 0
  lp.tokens!.forEach((tok, i) => {
    t.equal(lp.text_offset![i], offset, 'text_offset counts the text before the token')
    offset += tok.length
  })

  const e = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 4, temperature: 0, logprobs: 2, echo: true })
  const elp = e.choices[0]!.logprobs!
  const promptTokens = e.usage!.prompt_tokens
  t.ok(e.choices[0]!.text.startsWith(PROMPT), 'echo: the text starts with the prompt')
  t.equal(elp.tokens!.length, promptTokens + e.usage!.completion_tokens, 'prompt tokens, then completion tokens')
  t.equal(elp.token_logprobs![0], null, "the first prompt token's logprob is null")
  t.equal(elp.top_logprobs![0], null, 'and its top_logprobs too')
  for (let i = 1; i < elp.token_logprobs!.length; i++) t.ok(elp.token_logprobs![i]! <= 0, 'the others are logprobs')
  t.ok(close(elp.token_logprobs!.slice(promptTokens), lp.token_logprobs!.slice(0, 4)), "the completion's logprobs are the same as without echo")
  t.equal(elp.tokens!.slice(0, promptTokens).join(''), PROMPT, 'the prompt tokens spell the prompt')

  const echoOnly = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 4, temperature: 0, echo: true })
  t.equal(echoOnly.choices[0]!.text, e.choices[0]!.text, 'echo without logprobs: the same text')
  t.equal(echoOnly.choices[0]!.logprobs, null)

  const stream = await client.completions.create({ model: 'default', prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3, stream: true })
  const tokens: string[] = []
  const values: (number | null)[] = []
  for await (const chunk of stream) {
    tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []))
    values.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []))
  }
  t.same(tokens, lp.tokens, 'streamed: the same tokens')
  t.ok(close(values, lp.token_logprobs!), 'and the same logprobs')
})

t.test('out-of-range values: OpenAI-shaped 400 naming the field', async (t) => {
  const bad = async (path: string, body: Record<string, unknown>, param: string) => {
    const res = await fetch(`${server.url}/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', max_tokens: 2, ...body }) })
    t.equal(res.status, 400, `${JSON.stringify(body)}: 400`)
    const err = ((await res.json()) as { error: { type: string; param: string | null; message: string } }).error
    t.equal(err.type, 'invalid_request_error')
    t.equal(err.param, param, `param is ${param}`)
  }
  await bad('chat/completions', { messages: MESSAGES, logprobs: true, top_logprobs: 21 }, 'top_logprobs')
  await bad('chat/completions', { messages: MESSAGES, logprobs: true, top_logprobs: -1 }, 'top_logprobs')
  await bad('chat/completions', { messages: MESSAGES, top_logprobs: 2 }, 'top_logprobs')
  await bad('chat/completions', { messages: MESSAGES, logprobs: 'yes' }, 'logprobs')
  await bad('completions', { prompt: PROMPT, logprobs: 21 }, 'logprobs')
  await bad('completions', { prompt: PROMPT, logprobs: -1 }, 'logprobs')
  await bad('completions', { prompt: PROMPT, echo: 3 }, 'echo')
})

t.test('no KV is left held once the requests are done', async (t) => {
  const m = await metricsOnceKvFreed(server.url)
  t.equal(m.sum('spanserve:kv_cache_usage_perc'), 0, 'no KV budget reserved')
  t.equal(m.sum('spanserve:kv_cache_tokens'), 0, "no token in a worker's KV cache")
})
