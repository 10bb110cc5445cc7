/**
 * What the app answers before any route runs, and how any refusal looks, through inject(): OpenAI's
 * error body `{error: {message, type, param, code}}` with the status of its code, for malformed,
 * oversized and mistyped bodies, unknown routes and methods, too many headers, a prompt that cannot
 * fit, and a server shutting down. Unknown fields are ignored and named in one warning line.
 */
import t from 'tap'
import { capturedLogger, errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'

const ok = { model: 'default', prompt: 'Hello', max_tokens: 4 }

const cases: [string, string, unknown, number, string, string | null, Record<string, string>?][] = [
  ['invalid JSON', '/v1/completions', '{"model": ', 400, 'SPANSERVE_ERR_INVALID_REQUEST', null],
  ['empty body', '/v1/completions', '', 400, 'SPANSERVE_ERR_INVALID_REQUEST', null],
  ['missing prompt', '/v1/completions', { model: 'default' }, 400, 'SPANSERVE_ERR_VALIDATION', null],
  ['max_tokens as a string', '/v1/completions', { ...ok, max_tokens: '10' }, 400, 'SPANSERVE_ERR_VALIDATION', 'max_tokens'],
  ['negative max_tokens', '/v1/completions', { ...ok, max_tokens: -1 }, 400, 'SPANSERVE_ERR_VALIDATION', 'max_tokens'],
  ['huge max_tokens', '/v1/completions', { ...ok, max_tokens: 1e300 }, 400, 'SPANSERVE_ERR_VALIDATION', 'max_tokens'],
  ['temperature out of range', '/v1/completions', { ...ok, temperature: 9 }, 400, 'SPANSERVE_ERR_VALIDATION', 'temperature'],
  ['top_p zero', '/v1/completions', { ...ok, top_p: 0 }, 400, 'SPANSERVE_ERR_VALIDATION', 'top_p'],
  ['n above 128', '/v1/completions', { ...ok, n: 129 }, 400, 'SPANSERVE_ERR_VALIDATION', 'n'],
  ['stop list of thousands', '/v1/completions', { ...ok, stop: Array.from({ length: 3000 }, (_, i) => `s${i}`) }, 400, 'SPANSERVE_ERR_VALIDATION', 'stop'],
  ['prompt of wrong type', '/v1/completions', { ...ok, prompt: { a: 1 } }, 400, 'SPANSERVE_ERR_VALIDATION', 'prompt'],
  ['frequency_penalty out of range', '/v1/completions', { ...ok, frequency_penalty: 2.5 }, 400, 'SPANSERVE_ERR_VALIDATION', 'frequency_penalty'],
  ['presence_penalty out of range', '/v1/completions', { ...ok, presence_penalty: 2.5 }, 400, 'SPANSERVE_ERR_VALIDATION', 'presence_penalty'],
  ['repetition_penalty zero', '/v1/completions', { ...ok, repetition_penalty: 0 }, 400, 'SPANSERVE_ERR_VALIDATION', 'repetition_penalty'],
  ['min_p above 1', '/v1/completions', { ...ok, min_p: 1.5 }, 400, 'SPANSERVE_ERR_VALIDATION', 'min_p'],
  ['negative min_tokens', '/v1/completions', { ...ok, min_tokens: -1 }, 400, 'SPANSERVE_ERR_VALIDATION', 'min_tokens'],
  ['min_tokens above max_tokens', '/v1/completions', { ...ok, min_tokens: 30, max_tokens: 10 }, 400, 'SPANSERVE_ERR_VALIDATION', 'min_tokens'],
  ['a negative stop token id', '/v1/completions', { ...ok, stop_token_ids: [-1] }, 400, 'SPANSERVE_ERR_VALIDATION', 'stop_token_ids.0'],
  ['a logit_bias key not a token id', '/v1/completions', { ...ok, logit_bias: { abc: 1 } }, 400, 'SPANSERVE_ERR_VALIDATION', 'logit_bias'],
  ['a logit_bias beyond 100', '/v1/completions', { ...ok, logit_bias: { 5: 101 } }, 400, 'SPANSERVE_ERR_VALIDATION', 'logit_bias.5'],
  ['a suffix', '/v1/completions', { ...ok, suffix: 'end' }, 400, 'SPANSERVE_ERR_VALIDATION', 'suffix'],
  ['unknown model', '/v1/completions', { ...ok, model: 'gpt-9' }, 404, 'SPANSERVE_ERR_MODEL_NOT_FOUND', 'model'],
  ['unknown route', '/v1/nothing', ok, 404, 'SPANSERVE_ERR_NOT_FOUND', null],
  ['wrong content type', '/v1/completions', 'model=default', 415, 'SPANSERVE_ERR_MEDIA_TYPE', null, { 'content-type': 'application/x-www-form-urlencoded' }],
  ['JSON sent as text/plain', '/v1/completions', JSON.stringify(ok), 415, 'SPANSERVE_ERR_MEDIA_TYPE', null, { 'content-type': 'text/plain' }],
  ['body over --body-limit', '/v1/completions', JSON.stringify({ ...ok, prompt: 'x'.repeat(100_000) }), 413, 'SPANSERVE_ERR_BODY_TOO_LARGE', null],
  ['nesting deeper than the bound', '/v1/completions', `{"model":"default","prompt":"x","metadata":${'['.repeat(200)}${']'.repeat(200)}}`, 400, 'SPANSERVE_ERR_INVALID_REQUEST', null],
]

t.test('refusals: the status of their code and OpenAI error body, param naming the field; the engine sees none', async (t) => {
  const { app, engine } = await scriptedApp(t, { argv: ['--body-limit', '65536'] })
  for (const [name, url, body, status, code, param, headers] of cases) {
    const payload = typeof body === 'string' ? body : JSON.stringify(body)
    const res = await app.inject({ method: 'POST', url, payload, headers: headers ?? { 'content-type': 'application/json' } })
    t.equal(res.statusCode, status, `${name}: ${status}`)
    t.match(res.headers['content-type'], /^application\/json/, `${name}: JSON`)
    const e = errorOf(res)
    t.equal(e.code, code, `${name}: code`)
    t.equal(e.type, status === 413 || status < 500 ? 'invalid_request_error' : 'server_error', `${name}: type`)
    t.type(e.message, 'string', `${name}: message`)
    if (param === null) t.ok('param' in e, `${name}: param present`)
    else t.equal(e.param, param, `${name}: param`)
  }
  t.equal(engine.requests.length, 0)
})

t.test('invalid UTF-8 in a body is a 400 saying so', async (t) => {
  const { app } = await scriptedApp(t)
  const payload = Buffer.concat([Buffer.from('{"model":"default","max_tokens":2,"prompt":"ab'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')])
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload, headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 400)
  t.match(errorOf(res).message, /UTF-8/)
})

t.test('OpenAI options at their neutral value are accepted, as clients send them', async (t) => {
  const { app } = await scriptedApp(t)
  t.equal((await post(app, '/v1/completions', { ...ok, frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, best_of: 1, user: 'u1', suffix: null })).statusCode, 200)
  t.equal((await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, tools: [], response_format: { type: 'text' } })).statusCode, 200)
})

t.test("an unknown field does not hide a known field's bad value, which is named", async (t) => {
  const { app } = await scriptedApp(t)
  const res = await post(app, '/v1/completions', { ...ok, temprature: 0.5, max_tokens: '10' })
  t.equal(res.statusCode, 400)
  t.equal(errorOf(res).param, 'max_tokens')
})

t.test('a known route with the wrong method is a 405 naming the allowed one', async (t) => {
  const { app } = await scriptedApp(t)
  const res = await app.inject({ method: 'GET', url: '/v1/completions' })
  t.equal(res.statusCode, 405)
  t.equal(res.headers.allow, 'POST')
  t.equal(errorOf(res).code, 'SPANSERVE_ERR_METHOD')
  const put = await app.inject({ method: 'PUT', url: '/v1/trace/setting' })
  t.equal(put.statusCode, 405)
  t.equal(put.headers.allow, 'GET, POST')
})

t.test('more header fields than --max-headers: 431', async (t) => {
  const { app } = await scriptedApp(t, { argv: ['--max-headers', '24'] })
  const headers = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`x-h${i}`, 'v']))
  const res = await app.inject({ method: 'GET', url: '/v1/models', headers })
  t.equal(res.statusCode, 431)
  t.equal(errorOf(res).code, 'SPANSERVE_ERR_HEADERS_TOO_LARGE')
  t.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: { 'x-a': '1' } })).statusCode, 200)
})

t.test('a prompt longer than the whole context can hold is refused before it reaches the engine, naming its field', async (t) => {
  // 2048 tokens of at most 4 characters each: 8192 characters at most.
  const { app, engine } = await scriptedApp(t, { charsPerToken: 4, contextLength: 2048 })
  const huge = 'x'.repeat(9000)
  for (const [url, body, param] of [
    ['/v1/completions', { model: 'default', prompt: huge }, 'prompt'],
    ['/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: huge }] }, 'messages'],
    ['/v1/responses', { model: 'default', input: huge }, 'input'],
    ['/tokenize', { prompt: huge }, 'prompt'],
  ] as const) {
    const res = await post(app, url, body)
    t.equal(res.statusCode, 400, url)
    t.match(errorOf(res), { param, type: 'invalid_request_error' }, url)
  }
  t.equal(engine.requests.length + engine.tokenizeCalls.length, 0)
  t.equal((await post(app, '/v1/completions', { model: 'default', prompt: 'x'.repeat(8000) })).statusCode, 200, 'one that may fit goes on')
})

t.test('while shutting down: 503 with Retry-After, in OpenAI shape', async (t) => {
  let shuttingDown = false
  const { app, engine } = await scriptedApp(t, { isShuttingDown: () => shuttingDown })
  t.equal((await post(app, '/v1/completions', ok)).statusCode, 200)
  shuttingDown = true
  const res = await post(app, '/v1/completions', ok)
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(errorOf(res), { code: 'SPANSERVE_ERR_SHUTTING_DOWN', type: 'server_error' })
  t.equal(engine.requests.length, 1)
})

t.test('unknown fields are ignored and named once, in one warning line per request; none without them', async (t) => {
  const { log, lines } = capturedLogger()
  const { app, engine } = await scriptedApp(t, { log })
  const warnings = () => lines.filter((l) => String(l.msg).startsWith('request fields ignored'))
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hello', extra: 1 }], my_custom_flag: true, stream_options: null })
  t.equal(res.statusCode, 200)
  const nested = await post(app, '/v1/completions', { ...ok, temprature: 0.5, stream: true, stream_options: { include_usage: true, extra: 1 } })
  t.equal(nested.statusCode, 200)
  t.equal(engine.requests[1]!.sampling.temperature, 1, 'the misspelt field changes nothing')
  t.equal(warnings().length, 2)
  t.same(warnings()[0]!.ignored_fields, ['messages.0.extra', 'my_custom_flag'])
  t.same(warnings()[1]!.ignored_fields, ['temprature', 'stream_options.extra'])
  t.equal(warnings()[1]!.level, 40, 'a warning')
  await post(app, '/v1/completions', ok)
  t.equal(warnings().length, 2, 'a request without unknown fields logs no warning')
})

t.test('each refusal is logged once, at info, with its code and status', async (t) => {
  const { log, lines } = capturedLogger()
  const { app } = await scriptedApp(t, { log, argv: ['--body-limit', '65536'] })
  await app.inject({ method: 'POST', url: '/v1/completions', payload: JSON.stringify({ ...ok, prompt: 'x'.repeat(100_000) }), headers: { 'content-type': 'application/json' } })
  await post(app, '/v1/completions', { ...ok, model: 'gpt-9' })
  const refused = lines.filter((l) => l.msg === 'request refused')
  t.match(refused, [
    { level: 30, code: 'SPANSERVE_ERR_BODY_TOO_LARGE', status: 413 },
    { level: 30, code: 'SPANSERVE_ERR_MODEL_NOT_FOUND', status: 404 },
  ])
  t.equal(refused.length, 2)
})
