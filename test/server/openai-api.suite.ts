/**
 * The OpenAI-compatible API through the real processes (server, tokenizer, scheduler, worker over
 * ZeroMQ), driven by the official `openai` client.
 */
import t from 'tap'
import OpenAI from 'openai'
import { TEST_CACHE_DIR } from '../../harness/server.ts'
import { sharedServer } from '../helpers/shared-server.ts'
import { ensureModel } from '../../src/model/build.ts'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

t.test('GET /health is 200 once every process is ready', async (t) => {
  const res = await fetch(server.url + '/health')
  t.equal(res.status, 200)
  const body = (await res.json()) as { processes: { role: string; ready: boolean; pid: number }[] }
  t.same(body.processes.map((p) => p.role).sort(), ['scheduler', 'tokenizer', 'worker'])
  t.ok(
    body.processes.every((p) => p.ready && p.pid > 0 && p.pid !== server.proc.pid),
    'each is its own ready OS process',
  )
})

t.test('GET /v1/models lists the served model', async (t) => {
  const models = await client.models.list()
  t.same(
    models.data.map((m) => m.id),
    ['default'],
  )
})

t.test('a plain completion, greedy, with usage', async (t) => {
  const res = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 })
  t.equal(res.object, 'text_completion')
  t.match(res.id, /^cmpl-/)
  const text = res.choices[0]!.text
  t.ok(text.length > 0, 'text came back')
  t.match(text, /[a-z]+ [a-z]+/, 'words, as English-like text')
  t.equal(res.choices[0]!.finish_reason, 'length')
  t.equal(res.usage!.completion_tokens, 24)
  t.ok(res.usage!.prompt_tokens > 0)
  t.equal(res.usage!.total_tokens, res.usage!.prompt_tokens + 24)
})

t.test('a streamed completion gives the same text as the plain one', async (t) => {
  const plain = await client.completions.create({ model: 'default', prompt: 'The little girl', max_tokens: 20, temperature: 0 })
  const stream = await client.completions.create({ model: 'default', prompt: 'The little girl', max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let finish: string | null = null
  let usage: OpenAI.CompletionUsage | undefined
  let chunks = 0
  for await (const chunk of stream) {
    chunks++
    if (chunk.choices[0]) {
      text += chunk.choices[0].text
      finish = chunk.choices[0].finish_reason ?? finish
    }
    if (chunk.usage) usage = chunk.usage
  }
  t.ok(chunks > 3, 'several chunks')
  t.equal(text, plain.choices[0]!.text)
  t.equal(finish, 'length')
  t.equal(usage?.completion_tokens, 20)
})

t.test('prompt as token ids', async (t) => {
  const byText = await client.completions.create({ model: 'default', prompt: 'In the morning', max_tokens: 8, temperature: 0 })
  const completeIds = async (prompt: number[]) => {
    const res = await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt, max_tokens: 8, temperature: 0 }),
    })
    t.equal(res.status, 200)
    return (await res.json()) as { choices: { text: string }[]; usage: { prompt_tokens: number; completion_tokens: number } }
  }
  const short = await completeIds([1, 2, 3])
  t.equal(short.usage.prompt_tokens, 3)
  t.equal(short.usage.completion_tokens, 8)
  // The same prompt as the ids the served model's tokenizer gives it: the ids are the prompt, so the
  // greedy completion is the text prompt's, word for word.
  const ids = new TextTokenizer(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })).encode('In the morning')
  const byIds = await completeIds(ids)
  t.equal(byIds.usage.prompt_tokens, byText.usage!.prompt_tokens, 'as many prompt tokens as the text has')
  t.equal(byIds.choices[0]!.text, byText.choices[0]!.text, 'the completion of the text prompt')
  t.not(short.choices[0]!.text, byIds.choices[0]!.text, 'another prompt, another completion')
})

t.test('chat completion, plain and streamed', async (t) => {
  const messages = [
    { role: 'system' as const, content: 'You tell stories.' },
    { role: 'user' as const, content: 'Tell me about the forest.' },
  ]
  const res = await client.chat.completions.create({ model: 'default', messages, max_tokens: 16, temperature: 0 })
  t.equal(res.object, 'chat.completion')
  t.equal(res.choices[0]!.message.role, 'assistant')
  const content = res.choices[0]!.message.content ?? ''
  t.ok(content.length > 0)
  // Greedy: max_tokens runs out (length, all 16 tokens) or the model ends its turn first (stop, fewer).
  const finish = res.choices[0]!.finish_reason
  const used = res.usage!.completion_tokens
  if (finish === 'length') t.equal(used, 16, 'length: every token of max_tokens')
  else {
    t.equal(finish, 'stop', 'otherwise the model stopped')
    t.ok(used > 0 && used < 16, `stop: fewer tokens than max_tokens (${used})`)
  }
  t.equal(res.usage!.total_tokens, res.usage!.prompt_tokens + used)
  const stream = await client.chat.completions.create({ model: 'default', messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } })
  let text = ''
  let role: string | undefined
  let streamedFinish: string | null = null
  let usage: OpenAI.CompletionUsage | undefined
  for await (const chunk of stream) {
    role ??= chunk.choices[0]?.delta.role
    text += chunk.choices[0]?.delta.content ?? ''
    streamedFinish = chunk.choices[0]?.finish_reason ?? streamedFinish
    if (chunk.usage) usage = chunk.usage
  }
  t.equal(role, 'assistant', 'the first delta names the role')
  t.equal(text, content, 'streamed deltas add up to the plain answer')
  t.equal(streamedFinish, finish, 'the same finish reason')
  // The second time the prompt's whole blocks come from the prefix cache; the counts are the same.
  const counts = (u: typeof usage) => ({ prompt_tokens: u?.prompt_tokens, completion_tokens: u?.completion_tokens, total_tokens: u?.total_tokens })
  t.same(counts(usage), counts(res.usage), 'the same usage')
})

t.test('stop strings end the completion without returning the stop text', async (t) => {
  const full = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 30, temperature: 0 })
  const text = full.choices[0]!.text
  const words = text.trim().split(/\s+/)
  t.ok(words.length >= 4, 'enough words to pick a stop string from')
  const stopWord = words[3]!
  const cut = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: [stopWord] })
  t.equal(cut.choices[0]!.finish_reason, 'stop')
  t.equal(cut.choices[0]!.text, text.slice(0, text.indexOf(stopWord)))
})

t.test('responses carry x-request-id', async (t) => {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'my-request-42' },
    body: JSON.stringify({ model: 'default', prompt: 'Hello', max_tokens: 2 }),
  })
  t.equal(res.headers.get('x-request-id'), 'my-request-42')
})
