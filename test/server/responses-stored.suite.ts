/**
 * The Responses API beyond create, through the real server and the openai client: retrieve, input
 * items and delete of stored responses (store: false ones are not kept), and the output's logprobs
 * through include and top_logprobs, whole and streamed.
 */
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

async function notFound(t: Test, p: Promise<unknown>, what: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof OpenAI.NotFoundError, `${what}: 404`)
  const e = err as InstanceType<typeof OpenAI.NotFoundError>
  t.equal(e.code, 'SPANSERVE_ERR_RESPONSE_NOT_FOUND')
  t.equal(e.param, 'response_id')
  t.equal(e.type, 'invalid_request_error')
}

t.test('retrieve a stored response: the same response object', async (t) => {
  const created = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 8, temperature: 0 })
  const got = await client.responses.retrieve(created.id)
  t.equal(got.id, created.id)
  t.equal(got.object, 'response')
  t.equal(got.status, created.status)
  t.equal(got.output_text, created.output_text)
  t.same(got.usage, created.usage)
  t.same(got.output, created.output)
})

t.test('a streamed response is stored too', async (t) => {
  const stream = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 6, stream: true })
  let final: OpenAI.Responses.Response | null = null
  for await (const e of stream) if (e.type === 'response.completed' || e.type === 'response.incomplete') final = e.response
  const got = await client.responses.retrieve(final!.id)
  t.same(got.output, final!.output)
})

t.test("input items: the request's input with ids, in OpenAI's list shape and order", async (t) => {
  const input: OpenAI.Responses.ResponseInput = [
    { role: 'system', content: 'You tell stories.' },
    { role: 'user', content: 'Once upon a time' },
    { role: 'assistant', content: 'there was a fox.' },
    { role: 'user', content: [{ type: 'input_text', text: 'Go on.' }] },
  ]
  const created = await client.responses.create({ model: 'default', input, max_output_tokens: 4 })
  const page = await client.responses.inputItems.list(created.id)
  t.equal(page.data.length, 4)
  // OpenAI's default order is desc: the newest first.
  const texts = page.data.map((it) => (it.type === 'message' ? (it.content[0] as { text: string }).text : ''))
  t.same(texts, ['Go on.', 'there was a fox.', 'Once upon a time', 'You tell stories.'])
  for (const it of page.data) t.match(it.id, /^msg_/)
  t.same(
    page.data.map((it) => (it.type === 'message' ? it.role : null)),
    ['user', 'assistant', 'user', 'system'],
  )
  const raw = (await (await fetch(`${server.url}/v1/responses/${created.id}/input_items?order=asc&limit=2`)).json()) as {
    object: string
    data: { id: string }[]
    first_id: string
    last_id: string
    has_more: boolean
  }
  t.equal(raw.object, 'list')
  t.equal(raw.data.length, 2)
  t.equal(raw.has_more, true)
  t.equal(raw.first_id, page.data[3]!.id, 'asc starts with the oldest')
  t.equal(raw.last_id, raw.data[1]!.id)
  const next = (await (await fetch(`${server.url}/v1/responses/${created.id}/input_items?order=asc&limit=2&after=${raw.last_id}`)).json()) as { data: { id: string }[]; has_more: boolean }
  t.same(
    next.data.map((d) => d.id),
    [page.data[1]!.id, page.data[0]!.id],
  )
  t.equal(next.has_more, false)
  const bad = await fetch(`${server.url}/v1/responses/${created.id}/input_items?limit=0`)
  t.equal(bad.status, 400)
  t.equal(((await bad.json()) as { error: { param: string } }).error.param, 'limit')
  // A string input is one user message.
  const plain = await client.responses.create({ model: 'default', input: 'Hello', max_output_tokens: 2 })
  const items = await client.responses.inputItems.list(plain.id)
  t.match(items.data, [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] }])
})

t.test('delete: deleted, then retrieve and input items are 404s; unknown ids are 404s', async (t) => {
  const created = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 2 })
  t.same(await client.responses.delete(created.id), { id: created.id, object: 'response', deleted: true })
  await notFound(t, client.responses.retrieve(created.id), 'retrieve after delete')
  await notFound(t, client.responses.inputItems.list(created.id), 'input items after delete')
  await notFound(t, client.responses.delete(created.id), 'delete twice')
  await notFound(t, client.responses.retrieve('resp_unknown'), 'unknown id')
  // previous_response_id of a deleted response: the 400 it always was.
  const prev = await client.responses.create({ model: 'default', input: 'more', previous_response_id: created.id }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(prev instanceof OpenAI.BadRequestError)
})

t.test("delete with an empty JSON body, with {}, and with none: OpenAI's deleted object", async (t) => {
  for (const [what, init] of [
    ['an empty JSON body', { headers: { 'content-type': 'application/json' }, body: '' }],
    ['{}', { headers: { 'content-type': 'application/json' }, body: '{}' }],
    ['no body', {}],
  ] as const) {
    const created = await client.responses.create({ model: 'default', input: 'Once', max_output_tokens: 2 })
    const res = await fetch(`${server.url}/v1/responses/${created.id}`, { method: 'DELETE', ...init })
    t.equal(res.status, 200, what)
    t.same(await res.json(), { id: created.id, object: 'response', deleted: true }, what)
  }
  const bad = await fetch(`${server.url}/v1/responses/resp_x`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: '{' })
  t.equal(bad.status, 400, 'a body that is not JSON is still refused')
})

t.test('store: false is not retrievable', async (t) => {
  const created = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 2, store: false })
  t.equal((created as unknown as { store: boolean }).store, false, 'the response says it is not stored')
  await notFound(t, client.responses.retrieve(created.id), 'store false')
  await notFound(t, client.responses.delete(created.id), 'delete of store false')
})

t.test('include message.output_text.logprobs with top_logprobs 2: logprobs whose tokens add up to the text', async (t) => {
  const res = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 10, temperature: 0, top_logprobs: 2, include: ['message.output_text.logprobs'] })
  const part = res.output.find((o) => o.type === 'message')!
  const text = part.type === 'message' ? part.content[0]! : null
  t.equal(text?.type, 'output_text')
  const lp = text?.type === 'output_text' ? text.logprobs! : []
  t.equal(lp.length, res.usage!.output_tokens, 'one entry per generated token')
  t.equal(lp.map((l) => l.token).join(''), res.output_text, 'the tokens add up to the output text')
  for (const l of lp) {
    t.equal(l.top_logprobs.length, 2)
    t.ok(l.logprob <= 0)
    t.same(l.bytes, [...Buffer.from(l.token, 'utf8')])
    t.equal(l.top_logprobs[0]!.logprob, l.logprob, 'greedy: the chosen token is the most likely')
  }
  t.equal(res.top_logprobs, 2)
  // Retrieve gives the output without them (OpenAI's default).
  const got = await client.responses.retrieve(res.id)
  const gotPart = got.output.find((o) => o.type === 'message')
  t.same(gotPart?.type === 'message' && gotPart.content[0]!.type === 'output_text' ? gotPart.content[0]!.logprobs : null, [])
  // Without include there are none, top_logprobs or not (vLLM's rule).
  const plain = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 4, top_logprobs: 2 })
  const plainPart = plain.output.find((o) => o.type === 'message')
  t.same(plainPart?.type === 'message' && plainPart.content[0]!.type === 'output_text' ? plainPart.content[0]!.logprobs : null, [])
})

t.test("streamed logprobs: each delta carries its tokens', the done event all of them", async (t) => {
  const stream = await client.responses.create({
    model: 'default',
    input: 'Once upon a time',
    max_output_tokens: 10,
    temperature: 0,
    top_logprobs: 1,
    include: ['message.output_text.logprobs'],
    stream: true,
  })
  let text = ''
  const tokens: string[] = []
  let done: OpenAI.Responses.ResponseTextDoneEvent | null = null
  for await (const e of stream) {
    if (e.type === 'response.output_text.delta') {
      text += e.delta
      t.equal(e.logprobs.map((l) => l.token).join(''), e.delta, "a delta's tokens make its text")
      for (const l of e.logprobs) tokens.push(l.token)
    }
    if (e.type === 'response.output_text.done') done = e
  }
  t.equal(tokens.join(''), text)
  t.equal(done!.logprobs.map((l) => l.token).join(''), text)
  t.equal(done!.logprobs[0]!.top_logprobs!.length, 1)
})

t.test('bad top_logprobs is a 400 naming it', async (t) => {
  const err = await client.responses.create({ model: 'default', input: 'x', top_logprobs: 21, include: ['message.output_text.logprobs'] }).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof OpenAI.BadRequestError)
  t.equal((err as InstanceType<typeof OpenAI.BadRequestError>).param, 'top_logprobs')
})
