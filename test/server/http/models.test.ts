/** GET /v1/models and GET /v1/models/{model} through inject(): the served model's card; another id is a 404. */
import t from 'tap'
import { CONTEXT_LENGTH, errorOf, scriptedApp } from '../../helpers/scripted-app.ts'

t.test('the list holds the served model, with max_model_len', async (t) => {
  const { app } = await scriptedApp(t)
  const res = await app.inject({ method: 'GET', url: '/v1/models' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.strictSame(body, { object: 'list', data: [{ id: 'default', object: 'model', created: body.data[0].created, owned_by: 'spanserve', max_model_len: CONTEXT_LENGTH }] })
  t.ok(Math.abs(body.data[0].created - Date.now() / 1000) < 3600, 'created: seconds since the epoch')
})

t.test('retrieve: the same card; a name with a slash, raw or as %2F; another id is a 404 naming model', async (t) => {
  const { app } = await scriptedApp(t, { argv: ['--served-model-name', 'Qwen/Qwen3-0.6B'], contextLength: 4096 })
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json()
  t.equal(list.data[0].id, 'Qwen/Qwen3-0.6B')
  for (const url of ['/v1/models/Qwen/Qwen3-0.6B', '/v1/models/Qwen%2FQwen3-0.6B']) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, url)
    t.match(res.json(), { id: 'Qwen/Qwen3-0.6B', object: 'model', owned_by: 'spanserve', max_model_len: 4096 }, url)
    t.type(res.json().created, 'number')
  }
  const other = await app.inject({ method: 'GET', url: '/v1/models/gpt-9' })
  t.equal(other.statusCode, 404)
  t.match(errorOf(other), { code: 'SPANSERVE_ERR_MODEL_NOT_FOUND', param: 'model', type: 'invalid_request_error' })
  const bad = await app.inject({ method: 'GET', url: '/v1/models/%ff' })
  t.equal(bad.statusCode, 400, 'a path that is not valid percent-encoded UTF-8: 400')
  t.equal(errorOf(bad).code, 'SPANSERVE_ERR_INVALID_REQUEST')
})
