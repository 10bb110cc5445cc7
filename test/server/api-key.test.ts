/**
 * --api-key guards /v1/* (trace setting included) with a Bearer token; /health stays open. The
 * boundary is HTTP and the official client, so the app listens on a real port over the scripted
 * engine (it answers "ok" in three tokens here). That no log line of any process holds the key:
 * test/security/exposure.test.ts and key-file.test.ts, against the real processes.
 */
import t from 'tap'
import OpenAI from 'openai'
import { capturedLogger, scriptedApp } from '../helpers/scripted-app.ts'
import { ScriptedEngine, tokens } from '../helpers/scripted-engine.ts'

const KEY = 'sk-test-' + 'x'.repeat(24)
const { log, lines } = capturedLogger('debug')
const { app } = await scriptedApp(t, { env: { SPANSERVE_API_KEY: KEY }, log }, new ScriptedEngine(() => tokens(['o', 'k', '!'])))
await app.listen({ port: 0, host: '127.0.0.1' })
const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

t.test('no key, a wrong key: 401 in OpenAI shape', async (t) => {
  for (const auth of [undefined, 'Bearer wrong', `Basic ${KEY}`, `Bearer ${KEY}x`]) {
    const res = await fetch(url + '/v1/models', { headers: auth ? { authorization: auth } : {} })
    t.equal(res.status, 401, `authorization: ${auth}`)
    const body = (await res.json()) as { error: { code: string; type: string } }
    t.equal(body.error.code, 'SPANSERVE_ERR_UNAUTHORIZED')
    t.equal(body.error.type, 'authentication_error')
  }
  const setting = await fetch(url + '/v1/trace/setting', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"level":1}' })
  t.equal(setting.status, 401, 'the run-time trace setting is guarded too')
})

t.test('the right key works with the official client', async (t) => {
  const client = new OpenAI({ baseURL: url + '/v1', apiKey: KEY, maxRetries: 0 })
  const res = await client.completions.create({ model: 'default', prompt: 'Hello', max_tokens: 3 })
  t.equal(res.usage?.completion_tokens, 3)
  t.equal(res.choices[0]?.text, 'ok!')
  const wrong = new OpenAI({ baseURL: url + '/v1', apiKey: 'nope', maxRetries: 0 })
  const err = await wrong.models.list().then(
    () => null,
    (e: unknown) => e as { status?: number },
  )
  t.equal(err?.status, 401, 'the client reports 401 for a wrong key')
})

t.test('/health needs no key', async (t) => {
  t.equal((await fetch(url + '/health')).status, 200)
})

t.test("the key never reaches the server's log lines", async (t) => {
  t.ok(lines.length > 0, 'lines were logged')
  t.notOk(
    lines.some((l) => JSON.stringify(l).includes(KEY)),
    'no line holds it',
  )
})
