/**
 * GET/POST /v1/trace/setting through inject(): the setting read and changed at run time, the change
 * sent to every process, and who may change it (the admin key, else the API key).
 */
import t from 'tap'
import * as tracing from '../../../src/tracing/index.ts'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'

// The level is this process's tracing state: put back what the tests change.
const level = tracing.getLevel()
t.teardown(() => tracing.setLevel(level))

t.test('GET reads the setting; POST changes it, answers the new one and sends it to every process', async (t) => {
  const { app, broadcasts } = await scriptedApp(t)
  const now = (await app.inject({ method: 'GET', url: '/v1/trace/setting' })).json()
  t.strictSame(now, { enabled: false, level, sample_rate: 0 })
  const target = level === 2 ? 3 : 2
  const res = await post(app, '/v1/trace/setting', { level: target, sample_rate: 0.5 })
  t.equal(res.statusCode, 200)
  // With tracing off this process has no sampler: its rate stays 0, and that is what is sent.
  t.strictSame(res.json(), { enabled: false, level: target, sample_rate: 0 })
  t.strictSame(broadcasts, [{ type: 'trace_setting', level: target, sampleRate: 0 }])
  t.equal((await app.inject({ method: 'GET', url: '/v1/trace/setting' })).json().level, target)
})

t.test('a bad setting is a 400 naming the field, and nothing is sent', async (t) => {
  const { app, broadcasts } = await scriptedApp(t)
  for (const [body, param] of [
    [{ level: 4 }, 'level'],
    [{ sample_rate: 1.5 }, 'sample_rate'],
    [{ sample_rate: 'all' }, 'sample_rate'],
    [{}, null],
    [{ level: 1, verbose: true }, 'verbose'],
  ] as const) {
    const res = await post(app, '/v1/trace/setting', body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(errorOf(res).param, param, `${JSON.stringify(body)}: param`)
  }
  t.equal(broadcasts.length, 0)
})

t.test('POST takes the admin key when there is one (the API key is not enough); GET takes the API key', async (t) => {
  const { app, broadcasts } = await scriptedApp(t, { env: { SPANSERVE_API_KEY: 'sk-api', SPANSERVE_ADMIN_API_KEY: 'sk-admin' } })
  const as = (key: string) => ({ authorization: `Bearer ${key}` })
  t.equal((await post(app, '/v1/trace/setting', { level: 1 })).statusCode, 401)
  const api = await post(app, '/v1/trace/setting', { level: 1 }, as('sk-api'))
  t.equal(api.statusCode, 401, 'the API key cannot change the server')
  t.match(errorOf(api), { code: 'SPANSERVE_ERR_UNAUTHORIZED', type: 'authentication_error' })
  t.equal((await post(app, '/v1/trace/setting', { level: 1 }, as('sk-admin'))).statusCode, 200)
  t.equal(broadcasts.length, 1, 'only the admin change went out')
  t.equal((await app.inject({ method: 'GET', url: '/v1/trace/setting', headers: as('sk-api') })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/v1/trace/setting' })).statusCode, 401)
  const apiOnly = await scriptedApp(t, { env: { SPANSERVE_API_KEY: 'sk-api' } })
  t.equal((await post(apiOnly.app, '/v1/trace/setting', { level: 1 })).statusCode, 401, 'no admin key: the API key guards it')
  t.equal((await post(apiOnly.app, '/v1/trace/setting', { level: 1 }, as('sk-api'))).statusCode, 200)
})
