/**
 * A 4 MB prompt is refused from its length, before it is tokenized, on /v1/completions, /v1/responses,
 * /v1/chat/completions and /tokenize, with OpenAI's error body, while plain streams go on.
 */
import t from 'tap'
import { sharedServer } from '../helpers/shared-server.ts'
import { REFUSED_BEFORE_TOKENIZING } from '../../src/model/prompt-bound.ts'

const server = await sharedServer()

// Just under the default 4 MiB body limit with the JSON around it.
const HUGE = 'the cat sat on the mat. '.repeat(4_000_000 / 24)

async function post(path: string, body: unknown) {
  const res = await fetch(server.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: (await res.json()) as { error?: { message: string; type: string; param: string | null; code: string } } }
}

async function stream(prompt: string): Promise<{ chunks: number; finish: string | null; done: boolean }> {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 48, ignore_eos: true, stream: true }),
  })
  const text = await res.text()
  const events = text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))
  const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as { choices: { finish_reason: string | null }[] })
  return { chunks: chunks.length, finish: chunks.filter((c) => c.choices[0]?.finish_reason).at(-1)?.choices[0]?.finish_reason ?? null, done: events.at(-1) === '[DONE]' }
}

t.test('4 MB prompts are refused before tokenizing, and streams beside them complete', async (t) => {
  const streams = [stream('Once upon a time'), stream('The little fox'), stream('In the morning')]
  const refusals = await Promise.all([
    post('/v1/completions', { model: 'default', prompt: HUGE, max_tokens: 8 }),
    post('/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: HUGE }] }),
    post('/tokenize', { model: 'default', prompt: HUGE }),
    post('/tokenize', { model: 'default', messages: [{ role: 'user', content: HUGE }] }),
    post('/v1/responses', { model: 'default', input: HUGE }),
  ])
  const params = ['prompt', 'messages', 'prompt', 'messages', 'input']
  refusals.forEach(({ status, json }, i) => {
    t.equal(status, 400)
    t.equal(json.error?.code, 'SPANSERVE_ERR_CONTEXT_LENGTH')
    t.equal(json.error?.type, 'invalid_request_error')
    t.equal(json.error?.param, params[i])
    t.match(json.error?.message, REFUSED_BEFORE_TOKENIZING, 'refused from its length, not by tokenizing it')
  })
  for (const s of await Promise.all(streams)) {
    t.ok(s.done, 'the stream ends with [DONE]')
    t.equal(s.finish, 'length')
    t.ok(s.chunks >= 1)
  }
})

t.test('a prompt under the character bound but over the context is counted and refused', async (t) => {
  // About 6,000 tokens in 20,000 characters: under 2,047 × 13 characters, over 2,048 tokens.
  const { status, json } = await post('/v1/completions', { model: 'default', prompt: 'the cat sat on the mat. '.repeat(850), max_tokens: 1 })
  t.equal(status, 400)
  t.equal(json.error?.code, 'SPANSERVE_ERR_CONTEXT_LENGTH')
  t.equal(json.error?.param, 'prompt')
  t.notMatch(json.error?.message, REFUSED_BEFORE_TOKENIZING)
  const tok = await post('/tokenize', { model: 'default', prompt: 'the cat sat on the mat. '.repeat(850) })
  t.equal(tok.status, 400)
  t.equal(tok.json.error?.param, 'prompt')
})

t.test('/tokenize still answers a text that fits', async (t) => {
  const res = await fetch(server.url + '/tokenize', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'the cat sat on the mat. '.repeat(40) }),
  })
  const body = (await res.json()) as { count: number; max_model_len: number; tokens: number[] }
  t.equal(res.status, 200)
  t.ok(body.count > 100 && body.count <= body.max_model_len)
  t.equal(body.tokens.length, body.count)
})
