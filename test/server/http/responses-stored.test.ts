/**
 * Stored responses through inject(): GET /v1/responses/{id}, its input_items (OpenAI's list shape,
 * order and paging) and DELETE, against a scripted engine. An id not kept is a 404 naming response_id.
 */
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { logprobs, tokens } from '../../helpers/scripted-engine.ts'
import { parseSse } from '../../helpers/sse.ts'

async function notFound(t: Test, app: FastifyInstance, method: 'GET' | 'DELETE', url: string): Promise<void> {
  const res = await app.inject({ method, url })
  t.equal(res.statusCode, 404, `${method} ${url}: 404`)
  t.match(errorOf(res), { code: 'SPANSERVE_ERR_RESPONSE_NOT_FOUND', param: 'response_id', type: 'invalid_request_error' })
}

t.test('retrieve: the response object as created, without its logprobs', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [{ text: 'Hi', finishReason: 'stop', logprobs: logprobs('Hi', -0.5, [['Hi', -0.5]]) }]
  const created = (await post(app, '/v1/responses', { model: 'default', input: 'Hello', include: ['message.output_text.logprobs'] })).json()
  t.equal(created.output[0].content[0].logprobs.length, 1)
  const got = await app.inject({ method: 'GET', url: `/v1/responses/${created.id}` })
  t.equal(got.statusCode, 200)
  created.output[0].content[0].logprobs = []
  t.strictSame(got.json(), created)
})

t.test('a streamed response is stored too, as its completed event carried it', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['Once', ' more'], 'length')
  const sse = parseSse((await post(app, '/v1/responses', { model: 'default', input: 'Hello', stream: true })).body)
  const final = sse.chunks.at(-1)!.response as { id: string }
  const got = await app.inject({ method: 'GET', url: `/v1/responses/${final.id}` })
  t.strictSame(got.json(), final)
})

t.test("input_items: the request's input with ids, newest first, paged by limit, order and after", async (t) => {
  const { app } = await scriptedApp(t)
  const input = [
    { role: 'system', content: 'You tell stories.' },
    { role: 'user', content: 'Once upon a time' },
    { role: 'assistant', content: 'there was a fox.' },
    { role: 'user', content: [{ type: 'input_text', text: 'Go on.' }], id: 'msg_mine' },
  ]
  const created = (await post(app, '/v1/responses', { model: 'default', input })).json()
  const page = (await app.inject({ method: 'GET', url: `/v1/responses/${created.id}/input_items` })).json()
  t.equal(page.object, 'list')
  t.equal(page.has_more, false)
  t.match(page.data, [
    { id: 'msg_mine', type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'Go on.' }] },
    { id: /^msg_/, type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'there was a fox.', annotations: [] }] },
    { id: /^msg_/, type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once upon a time' }] },
    { id: /^msg_/, type: 'message', role: 'system', content: [{ type: 'input_text', text: 'You tell stories.' }] },
  ])
  t.equal(page.first_id, 'msg_mine')
  t.equal(page.last_id, page.data[3].id)
  const asc = (await app.inject({ method: 'GET', url: `/v1/responses/${created.id}/input_items?order=asc&limit=2` })).json()
  t.same(
    asc.data.map((d: { id: string }) => d.id),
    [page.data[3].id, page.data[2].id],
  )
  t.equal(asc.has_more, true)
  t.equal(asc.last_id, page.data[2].id)
  const next = (await app.inject({ method: 'GET', url: `/v1/responses/${created.id}/input_items?order=asc&limit=2&after=${asc.last_id}` })).json()
  t.same(
    next.data.map((d: { id: string }) => d.id),
    [page.data[1].id, 'msg_mine'],
  )
  t.equal(next.has_more, false)
  for (const [query, param] of [
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=x', 'limit'],
    ['order=up', 'order'],
    ['after=msg_none', 'after'],
  ]) {
    const bad = await app.inject({ method: 'GET', url: `/v1/responses/${created.id}/input_items?${query}` })
    t.equal(bad.statusCode, 400, `${query}: 400`)
    t.equal(errorOf(bad).param, param, `${query}: param ${param}`)
  }
  const plain = (await post(app, '/v1/responses', { model: 'default', input: 'Hello', tools: [{ type: 'function', name: 'f' }] })).json()
  const items = (await app.inject({ method: 'GET', url: `/v1/responses/${plain.id}/input_items` })).json()
  t.match(items.data, [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] }], 'a string input is one user message')
  t.equal(items.data.length, 1)
  const calls = (
    await post(app, '/v1/responses', {
      model: 'default',
      input: [
        { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'done' },
      ],
    })
  ).json()
  const callItems = (await app.inject({ method: 'GET', url: `/v1/responses/${calls.id}/input_items?order=asc` })).json()
  t.match(callItems.data, [
    { id: /^fc_/, type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}', status: 'completed' },
    { id: /^fco_/, type: 'function_call_output', call_id: 'call_1', output: 'done', status: 'completed' },
  ])
})

t.test('delete: the deleted object, then retrieve, input_items and delete are 404s; so are unknown ids and store: false', async (t) => {
  const { app } = await scriptedApp(t)
  const created = (await post(app, '/v1/responses', { model: 'default', input: 'Hello' })).json()
  const del = await app.inject({ method: 'DELETE', url: `/v1/responses/${created.id}` })
  t.equal(del.statusCode, 200)
  t.strictSame(del.json(), { id: created.id, object: 'response', deleted: true })
  await notFound(t, app, 'GET', `/v1/responses/${created.id}`)
  await notFound(t, app, 'GET', `/v1/responses/${created.id}/input_items`)
  await notFound(t, app, 'DELETE', `/v1/responses/${created.id}`)
  await notFound(t, app, 'GET', '/v1/responses/resp_unknown')
  const prev = await post(app, '/v1/responses', { model: 'default', input: 'more', previous_response_id: created.id })
  t.equal(prev.statusCode, 400, 'previous_response_id of a deleted response: a 400')
  const unstored = (await post(app, '/v1/responses', { model: 'default', input: 'Hello', store: false })).json()
  await notFound(t, app, 'GET', `/v1/responses/${unstored.id}`)
  await notFound(t, app, 'DELETE', `/v1/responses/${unstored.id}`)
})

t.test('delete takes an empty JSON body, {} or none; a body that is not JSON is a 400', async (t) => {
  const { app } = await scriptedApp(t)
  for (const [what, init] of [
    ['an empty JSON body', { headers: { 'content-type': 'application/json' }, payload: '' }],
    ['{}', { headers: { 'content-type': 'application/json' }, payload: '{}' }],
    ['no body', {}],
  ] as const) {
    const created = (await post(app, '/v1/responses', { model: 'default', input: 'Once' })).json()
    const res = await app.inject({ method: 'DELETE', url: `/v1/responses/${created.id}`, ...init })
    t.equal(res.statusCode, 200, what)
    t.strictSame(res.json(), { id: created.id, object: 'response', deleted: true }, what)
  }
  const bad = await app.inject({ method: 'DELETE', url: '/v1/responses/resp_x', headers: { 'content-type': 'application/json' }, payload: '{' })
  t.equal(bad.statusCode, 400)
})
