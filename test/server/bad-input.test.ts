/** Malformed requests get OpenAI-shaped 4xx errors from the real server, which keeps serving. */
import t, { type Test } from 'tap'
import { startServer } from '../../harness/server.ts'

const server = await startServer({ args: ['--body-limit', '65536'] })
t.teardown(() => server.stop())

async function post(path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await fetch(server.url + path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const json = (await res.json()) as { error?: { message: string; type: string; param: string | null; code: string } }
  return { status: res.status, json, headers: res.headers }
}

function isOpenAIError(t: Test, json: { error?: { message: unknown; type: unknown; param: unknown; code: unknown } }) {
  t.type(json.error?.message, 'string', 'error.message')
  t.type(json.error?.type, 'string', 'error.type')
  t.ok(json.error && 'param' in json.error, 'error.param present')
  t.type(json.error?.code, 'string', 'error.code')
}

const ok = { model: 'default', prompt: 'Hello', max_tokens: 4 }

const cases: [string, string, unknown, number, string | RegExp, Record<string, string>?][] = [
  ['invalid JSON', '/v1/completions', '{"model": ', 400, 'SPANSERVE_ERR_INVALID_REQUEST'],
  ['empty body', '/v1/completions', '', 400, /SPANSERVE_ERR_(INVALID_REQUEST|VALIDATION)/],
  ['missing prompt', '/v1/completions', { model: 'default' }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['max_tokens as a string', '/v1/completions', { ...ok, max_tokens: '10' }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['negative max_tokens', '/v1/completions', { ...ok, max_tokens: -1 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['huge max_tokens', '/v1/completions', { ...ok, max_tokens: 1e300 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['temperature out of range', '/v1/completions', { ...ok, temperature: 9 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['top_p zero', '/v1/completions', { ...ok, top_p: 0 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['n above 128', '/v1/completions', { ...ok, n: 129 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['stop list of thousands', '/v1/completions', { ...ok, stop: Array.from({ length: 3000 }, (_, i) => `s${i}`) }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['prompt of wrong type', '/v1/completions', { ...ok, prompt: { a: 1 } }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['token id outside the vocabulary', '/v1/completions', { ...ok, prompt: [1, 99999999] }, 400, 'SPANSERVE_ERR_TOKEN_ID'],
  ['negative token id', '/v1/completions', { ...ok, prompt: [-5] }, 400, /SPANSERVE_ERR_(TOKEN_ID|VALIDATION)/],
  ['prompt longer than the context', '/v1/completions', { ...ok, prompt: 'word '.repeat(5000) }, 400, 'SPANSERVE_ERR_CONTEXT_LENGTH'],
  ['max_tokens beyond the context', '/v1/completions', { ...ok, max_tokens: 100000 }, 400, 'SPANSERVE_ERR_CONTEXT_LENGTH'],
  ['unknown model', '/v1/completions', { ...ok, model: 'gpt-9' }, 404, 'SPANSERVE_ERR_MODEL_NOT_FOUND'],
  ['chat without messages', '/v1/chat/completions', { model: 'default', messages: [] }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['chat with a bad role', '/v1/chat/completions', { model: 'default', messages: [{ role: 'wizard', content: 'x' }] }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['unknown route', '/v1/nothing', ok, 404, 'SPANSERVE_ERR_NOT_FOUND'],
  ['option value out of range', '/v1/completions', { ...ok, frequency_penalty: 2.5 }, 400, 'SPANSERVE_ERR_VALIDATION'],
  ['wrong content type', '/v1/completions', 'model=default', 415, 'SPANSERVE_ERR_MEDIA_TYPE', { 'content-type': 'application/x-www-form-urlencoded' }],
  ['JSON sent as text/plain', '/v1/completions', JSON.stringify(ok), 415, 'SPANSERVE_ERR_MEDIA_TYPE', { 'content-type': 'text/plain' }],
  ['body over the limit', '/v1/completions', JSON.stringify({ ...ok, prompt: 'x'.repeat(100_000) }), 413, 'SPANSERVE_ERR_BODY_TOO_LARGE'],
]

for (const [name, path, body, status, code, headers] of cases) {
  t.test(name, async (t) => {
    const res = await post(path, body, headers)
    t.equal(res.status, status)
    isOpenAIError(t, res.json)
    t.match(res.json.error?.code, code)
  })
}

t.test('invalid UTF-8 in a body is a 400', async (t) => {
  const bytes = Buffer.concat([Buffer.from('{"model":"default","max_tokens":2,"prompt":"ab'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')])
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: new Uint8Array(bytes) })
  t.equal(res.status, 400)
  const json = (await res.json()) as { error: { message: string; code: string } }
  t.match(json.error.message, /UTF-8/)
})

t.test('OpenAI options at their neutral value are accepted, as clients send them', async (t) => {
  const res = await post('/v1/completions', { ...ok, frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, best_of: 1, user: 'u1' })
  t.equal(res.status, 200)
  const chat = await post('/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, tools: [], response_format: { type: 'text' } })
  t.equal(chat.status, 200)
})

t.test('the server is healthy afterwards and the next valid request is correct', async (t) => {
  const health = await fetch(server.url + '/health')
  t.equal(health.status, 200)
  const res = await post('/v1/completions', ok)
  t.equal(res.status, 200)
  t.equal((res.json as unknown as { usage: { completion_tokens: number } }).usage.completion_tokens, 4)
})

t.test("an unknown field does not hide a known field's bad value, which is named", async (t) => {
  const res = await post('/v1/completions', { ...ok, temprature: 0.5, max_tokens: '10' })
  t.equal(res.status, 400)
  t.equal(res.json.error?.param, 'max_tokens')
})

t.test('a known route with the wrong method is a 405 naming the allowed one', async (t) => {
  const res = await fetch(server.url + '/v1/completions')
  t.equal(res.status, 405)
  t.equal(res.headers.get('allow'), 'POST')
  const body = (await res.json()) as { error: { code: string } }
  t.equal(body.error.code, 'SPANSERVE_ERR_METHOD')
})

t.test('refusals are logged and counted', async (t) => {
  const metrics = await (await fetch(server.url + '/metrics')).text()
  t.match(metrics, /spanserve:request_failure_total\{code="SPANSERVE_ERR_VALIDATION"\} [1-9]/)
  t.match(metrics, /spanserve:request_failure_total\{code="SPANSERVE_ERR_MODEL_NOT_FOUND"\} 1/)
  t.ok(server.logs.some((l) => l.msg === 'request refused' && l.code === 'SPANSERVE_ERR_BODY_TOO_LARGE'))
})
