/** --api-key guards /v1/* (trace setting included) with a Bearer token; /health stays open. */
import t from 'tap'
import OpenAI from 'openai'
import { startServer } from '../../harness/server.ts'

const KEY = 'sk-test-' + 'x'.repeat(24)
const server = await startServer({ env: { SPANSERVE_API_KEY: KEY } })
t.teardown(() => server.stop())

t.test('no key, a wrong key: 401 in OpenAI shape', async (t) => {
  for (const auth of [undefined, 'Bearer wrong', `Basic ${KEY}`, `Bearer ${KEY}x`]) {
    const res = await fetch(server.url + '/v1/models', { headers: auth ? { authorization: auth } : {} })
    t.equal(res.status, 401, `authorization: ${auth}`)
    const body = (await res.json()) as { error: { code: string; type: string } }
    t.equal(body.error.code, 'SPANSERVE_ERR_UNAUTHORIZED')
    t.equal(body.error.type, 'authentication_error')
  }
  const setting = await fetch(server.url + '/v1/trace/setting', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"level":1}' })
  t.equal(setting.status, 401, 'the run-time trace setting is guarded too')
})

t.test('the right key works with the official client', async (t) => {
  const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: KEY, maxRetries: 0 })
  const res = await client.completions.create({ model: 'default', prompt: 'Hello', max_tokens: 3 })
  t.equal(res.usage?.completion_tokens, 3)
  const wrong = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'nope', maxRetries: 0 })
  const err = await wrong.models.list().then(
    () => null,
    (e: unknown) => e as { status?: number },
  )
  t.equal(err?.status, 401, 'the client reports 401 for a wrong key')
})

t.test('/health needs no key', async (t) => {
  t.equal((await fetch(server.url + '/health')).status, 200)
})

t.test('the key never reaches the logs', async (t) => {
  t.notOk(server.logs.some((l) => JSON.stringify(l).includes(KEY)))
})
