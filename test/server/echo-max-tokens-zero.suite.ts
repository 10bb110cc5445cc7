/**
 * max_tokens 0 with echo (what lm-evaluation-harness sends to score a prompt), through the real
 * server and the openai client: the prompt comes back as the text with its logprobs, the same as
 * the prompt part of max_tokens 1's, finish_reason "length" and no completion token; without echo
 * it stays a 400 naming max_tokens.
 */
import t from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const prompt = 'Once upon a time there was a little fox'

t.test('echo with max_tokens 0: the prompt and its logprobs, as max_tokens 1 gives them', async (t) => {
  const zero = await client.completions.create({ model: 'default', prompt, max_tokens: 0, echo: true, logprobs: 1 })
  const one = await client.completions.create({ model: 'default', prompt, max_tokens: 1, echo: true, logprobs: 1, temperature: 0 })
  const z = zero.choices[0]!
  const o = one.choices[0]!
  t.equal(z.text, prompt, 'the text is the prompt')
  t.equal(z.finish_reason, 'length')
  t.equal(zero.usage!.completion_tokens, 0)
  t.equal(zero.usage!.prompt_tokens, one.usage!.prompt_tokens)
  t.equal(zero.usage!.total_tokens, zero.usage!.prompt_tokens)
  const n = zero.usage!.prompt_tokens
  t.equal(z.logprobs!.tokens!.length, n, 'one entry per prompt token, none for a generated one')
  t.same(z.logprobs!.tokens, o.logprobs!.tokens!.slice(0, n))
  t.same(z.logprobs!.token_logprobs, o.logprobs!.token_logprobs!.slice(0, n), 'the same prompt logprobs')
  t.same(z.logprobs!.top_logprobs, o.logprobs!.top_logprobs!.slice(0, n))
  t.same(z.logprobs!.text_offset, o.logprobs!.text_offset!.slice(0, n))
  t.equal(z.logprobs!.token_logprobs![0], null, 'the first prompt token has no logprob')
  t.equal(z.logprobs!.tokens!.join(''), z.text, 'the tokens add up to the text')
})

t.test('echo with max_tokens 0, streamed and from token ids: the prompt, finish "length"', async (t) => {
  const ids = (await (await fetch(server.url + '/tokenize', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt }) })).json()) as { tokens: number[] }
  const whole = await client.completions.create({ model: 'default', prompt: ids.tokens, max_tokens: 0, echo: true })
  t.equal(whole.choices[0]!.text, prompt, 'a token-id prompt echoes as its text')
  t.equal(whole.choices[0]!.logprobs, null, 'no logprobs unless asked')
  const stream = await client.completions.create({ model: 'default', prompt, max_tokens: 0, echo: true, stream: true, stream_options: { include_usage: true } })
  let text = ''
  const reasons: (string | null)[] = []
  let usage: OpenAI.CompletionUsage | null | undefined
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.text
      reasons.push(c.finish_reason)
    }
    if (chunk.usage) usage = chunk.usage
  }
  t.equal(text, prompt)
  t.equal(reasons.at(-1), 'length')
  t.equal(usage?.completion_tokens, 0)
})

t.test('max_tokens 0 without echo is a 400 naming max_tokens', async (t) => {
  for (const echo of [undefined, false]) {
    const err = await client.completions.create({ model: 'default', prompt, max_tokens: 0, echo }).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof OpenAI.BadRequestError, `echo ${echo}`)
    const e = err as InstanceType<typeof OpenAI.BadRequestError>
    t.equal(e.param, 'max_tokens')
    t.equal(e.code, 'SPANSERVE_ERR_VALIDATION')
  }
  const chat = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(chat instanceof OpenAI.BadRequestError, 'chat keeps max_tokens ≥ 1')
})
