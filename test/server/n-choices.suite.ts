/**
 * n choices, best_of and several prompts through the real server with the openai client: distinct
 * indexes, prompt-major order, greedy choices identical, seeded choices reproducible, usage summed,
 * the bounds (OpenAI's 400 naming `param`), and no KV left held after.
 */
import t from 'tap'
import OpenAI from 'openai'
import { OBSERVED, sharedServer } from '../helpers/shared-server.ts'
import { metricsOnceKvFreed, parseExposition, type Exposition } from '../helpers/prometheus.ts'

const server = await sharedServer(OBSERVED)
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const metrics = async (): Promise<Exposition> => parseExposition(await (await fetch(server.url + '/metrics')).text())

t.test('n: distinct indexes; greedy choices identical; seeded choices reproducible and varied', async (t) => {
  const greedy = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, n: 4 })
  t.same(
    greedy.choices.map((c) => c.index),
    [0, 1, 2, 3],
    'indexes 0..3',
  )
  t.equal(new Set(greedy.choices.map((c) => c.text)).size, 1, 'greedy: every choice the same')
  t.equal(greedy.usage!.completion_tokens, 32, 'completion tokens summed over the choices')
  const one = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 })
  t.equal(greedy.usage!.prompt_tokens, one.usage!.prompt_tokens, 'the prompt counted once')

  const seeded = () => client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 12, temperature: 1, seed: 1234, n: 16 })
  const a = await seeded()
  const b = await seeded()
  t.equal(a.choices.length, 16)
  t.same(
    a.choices.map((c) => c.text),
    b.choices.map((c) => c.text),
    'the same seed: the same 16 choices',
  )
  t.ok(new Set(a.choices.map((c) => c.text)).size > 1, 'each choice its own draw')

  const chat = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0, n: 3 })
  t.same(
    chat.choices.map((c) => c.index),
    [0, 1, 2],
    'chat: n choices too',
  )

  const stream = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, n: 3, stream: true, stream_options: { include_usage: true } })
  const texts = ['', '', '']
  const finished = new Set<number>()
  let usage: OpenAI.CompletionUsage | undefined
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts[c.index] += c.text
      if (c.finish_reason) finished.add(c.index)
    }
    usage = chunk.usage ?? usage
  }
  t.ok(texts[0]!.length > 0 && new Set(texts).size === 1, 'streamed, greedy: three choices with the same text')
  t.equal(finished.size, 3, 'each choice finishes')
  t.equal(usage?.completion_tokens, 18, 'usage sums the choices')
})

t.test('best_of ≥ n: n choices back, the most likely first', async (t) => {
  const r = await client.completions.create({ model: 'default', prompt: 'The cat', max_tokens: 6, temperature: 1, seed: 5, n: 2, best_of: 4 })
  t.same(
    r.choices.map((c) => c.index),
    [0, 1],
  )
})

t.test('several prompts: choices prompt-major, n per prompt, usage summed', async (t) => {
  const prompts = ['Once upon a time', 'The cat sat']
  const r = await client.completions.create({ model: 'default', prompt: prompts, max_tokens: 5, temperature: 0, n: 2 })
  t.same(
    r.choices.map((c) => c.index),
    [0, 1, 2, 3],
  )
  const each = await Promise.all(prompts.map((p) => client.completions.create({ model: 'default', prompt: p, max_tokens: 5, temperature: 0 })))
  t.same(
    r.choices.map((c) => c.text),
    [each[0]!.choices[0]!.text, each[0]!.choices[0]!.text, each[1]!.choices[0]!.text, each[1]!.choices[0]!.text],
    'prompt 0 twice, then prompt 1 twice',
  )
  t.equal(r.usage!.prompt_tokens, each[0]!.usage!.prompt_tokens + each[1]!.usage!.prompt_tokens, 'prompt tokens summed, each prompt once')
  const ids = await client.completions.create({
    model: 'default',
    prompt: [
      [1, 2, 3],
      [4, 5],
    ],
    max_tokens: 3,
    temperature: 0,
  })
  t.same(
    ids.choices.map((c) => c.index),
    [0, 1],
    'token-array prompts too',
  )
})

t.test('bounds: OpenAI-shaped 400 naming the field', async (t) => {
  const bad = async (body: Record<string, unknown>, param: string) => {
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 4, ...body }),
    })
    t.equal(res.status, 400, `${JSON.stringify(body)}: 400`)
    const err = ((await res.json()) as { error: { type: string; param: string | null } }).error
    t.equal(err.type, 'invalid_request_error')
    t.equal(err.param, param, `param is ${param}`)
  }
  await bad({ n: 0 }, 'n')
  await bad({ n: 129 }, 'n')
  await bad({ n: 4, best_of: 2 }, 'best_of')
  await bad({ n: 1, best_of: 2, stream: true }, 'best_of')
  await bad({ n: 16, max_tokens: 1000 }, 'n')
})

t.test('the n sequences share one prefill of their prompt: the first prefills it, the others start from its cached whole blocks', async (t) => {
  const prompt = Array.from({ length: 40 }, (_, i) => 100 + i) // 40 tokens: two whole blocks of 16 are shared
  const hits = async () => (await metrics()).sum('spanserve:prefix_cache_hits_total')
  const before = await hits()
  const res = await client.completions.create({ model: 'default', prompt, max_tokens: 4, n: 4, temperature: 0 })
  t.same(
    res.choices.map((c) => c.index),
    [0, 1, 2, 3],
  )
  t.equal(new Set(res.choices.map((c) => c.text)).size, 1, 'greedy: the same text four times')
  const until = Date.now() + 5000
  while (Date.now() < until && (await hits()) - before < 3 * 32) await new Promise((r) => setTimeout(r, 100))
  t.equal((await hits()) - before, 3 * 32, "each of the three other sequences started from the prompt's 32 cached tokens")
})

t.test('no KV is left held once the requests are done', async (t) => {
  const m = await metricsOnceKvFreed(server.url)
  t.equal(m.sum('spanserve:kv_cache_usage_perc'), 0, 'no KV budget reserved')
  t.equal(m.sum('spanserve:kv_cache_tokens'), 0, "no token in a worker's KV cache")
})
