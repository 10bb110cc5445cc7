/**
 * --api-key through inject(): every data-plane route needs `Authorization: Bearer KEY`, checked on
 * the route the router matched (so no spelling of a path gets around it); /health stays open.
 */
import t from 'tap'
import { errorOf, scriptedApp } from '../../helpers/scripted-app.ts'

const KEY = 'sk-test-' + 'x'.repeat(24)

/** Every route that needs the API key, with a body it would accept. */
const ROUTES: [string, string, unknown?][] = [
  ['GET', '/v1/models'],
  ['GET', '/v1/models/default'],
  ['POST', '/v1/completions', { model: 'default', prompt: 'Hi' }],
  ['POST', '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hi' }] }],
  ['POST', '/v1/responses', { model: 'default', input: 'Hi' }],
  ['GET', '/v1/responses/resp_x'],
  ['GET', '/v1/responses/resp_x/input_items'],
  ['DELETE', '/v1/responses/resp_x'],
  ['POST', '/tokenize', { prompt: 'Hi' }],
  ['POST', '/detokenize', { tokens: [1] }],
  ['GET', '/v1/trace/setting'],
  ['POST', '/v1/trace/setting', { level: 1 }],
]

t.test('no key, a wrong key, another scheme, a longer key: 401 in OpenAI shape on every route; the engine sees nothing', async (t) => {
  const { app, engine } = await scriptedApp(t, { env: { SPANSERVE_API_KEY: KEY } })
  for (const [method, url, payload] of ROUTES) {
    for (const auth of [undefined, 'Bearer wrong', `Basic ${KEY}`, `Bearer ${KEY}x`, `bearer ${KEY}`]) {
      const res = await app.inject({ method: method as 'GET', url, payload: payload as object, headers: auth ? { authorization: auth } : {} })
      t.equal(res.statusCode, 401, `${method} ${url}, authorization: ${auth}`)
      t.match(errorOf(res), { code: 'SPANSERVE_ERR_UNAUTHORIZED', type: 'authentication_error', param: null })
    }
  }
  t.equal(engine.requests.length + engine.tokenizeCalls.length, 0)
})

t.test('the right key opens every route', async (t) => {
  const { app, engine } = await scriptedApp(t, { env: { SPANSERVE_API_KEY: KEY } })
  engine.tokenizeScript = () => ({ tokens: [1], text: 'x' })
  for (const [method, url, payload] of ROUTES) {
    const res = await app.inject({ method: method as 'GET', url, payload: payload as object, headers: { authorization: `Bearer ${KEY}` } })
    t.not(res.statusCode, 401, `${method} ${url}`)
  }
  t.equal(engine.requests.length, 3, 'the generations ran')
})

t.test('any spelling of a path that reaches a route meets its check; one that reaches none is a 404', async (t) => {
  const { app } = await scriptedApp(t, { env: { SPANSERVE_API_KEY: KEY } })
  for (const url of ['/v1/models/%64efault', '/v1/models?x=/health', '/v1/responses/resp_x%2Finput_items']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 401, url)
  }
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, '/health is open')
  t.equal((await app.inject({ method: 'GET', url: '/health?x=/v1/models' })).statusCode, 200)
  const none = await app.inject({ method: 'GET', url: '/v1/nothing' })
  t.equal(none.statusCode, 404)
  t.equal(errorOf(none).code, 'SPANSERVE_ERR_NOT_FOUND')
})

t.test('the key from a file (--api-key-file), as the README advises', async (t) => {
  const dir = t.testdir({ key: `${KEY}\n` })
  const { app } = await scriptedApp(t, { argv: ['--api-key-file', `${dir}/key`] })
  t.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: `Bearer ${KEY}` } })).statusCode, 200, 'the trailing line break is not part of the key')
})

t.test('with --api-key, a bearer token no longer names the client (all send the same); X-Spanserve-Client does', async (t) => {
  const keyed = await scriptedApp(t, { env: { SPANSERVE_API_KEY: KEY } })
  const auth = { authorization: `Bearer ${KEY}` }
  await keyed.app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'default', prompt: 'Hi' }, headers: auth })
  await keyed.app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'default', prompt: 'Hi' }, headers: { ...auth, 'x-spanserve-client': 'tenant-7' } })
  t.same(
    keyed.engine.requests.map((r) => r.client),
    ['ip:127.0.0.1', 'tenant-7'],
  )
  const open = await scriptedApp(t)
  await open.app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'default', prompt: 'Hi' }, headers: { authorization: 'Bearer team-token' } })
  const client = open.engine.requests[0]!.client!
  t.match(client, /^key:[0-9a-f]{16}$/, 'without --api-key: a hash of the bearer token')
  t.notMatch(client, /team-token/, 'never the token itself')
})
