/**
 * Request fields as vLLM treats them, through the real server and the openai client: unknown fields
 * are ignored and named in one warning line; the OpenAI SDK's bookkeeping fields are accepted; bad
 * values of known fields are a 400 naming the field; an assistant message may have content null.
 * Also the routes a vLLM user calls: models.retrieve and stream_options.continuous_usage_stats.
 */
import t from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'
import { SDK_FIELDS_CHAT } from '../helpers/sdk-fields.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

async function post(path: string, body: unknown) {
  const res = await fetch(server.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  // A stream is answered as server-sent events; only its status matters here.
  const json = (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) : {}
  return { status: res.status, json: json as { error?: { param: string | null; code: string; message: string } } }
}

const warnings = () => server.logs.filter((l) => l.msg !== undefined && String(l.msg).startsWith('request fields ignored'))

t.test('unknown fields are ignored, named once in one warning line', async (t) => {
  const before = warnings().length
  const res = await client.chat.completions.create({
    model: 'default',
    messages: [{ role: 'user', content: 'Hello' }],
    max_tokens: 4,
    // As LangChain's modelKwargs and the AI SDK's providerOptions pass them through.
    // @ts-expect-error not an OpenAI field
    my_custom_flag: true,
    stream_options: null,
  })
  t.equal(res.choices[0]!.message.role, 'assistant')
  const nested = await post('/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 2, temprature: 0.5, stream: true, stream_options: { include_usage: true, extra: 1 } })
  t.equal(nested.status, 200)
  await server.waitForLog((l) => String(l.msg).includes('stream_options.extra'))
  const lines = warnings().slice(before)
  t.equal(lines.length, 2, 'one line per request')
  t.same(lines[0]!.ignored_fields, ['my_custom_flag'])
  t.same(lines[1]!.ignored_fields, ['temprature', 'stream_options.extra'])
  t.equal(lines[1]!.level, 40, 'a warning')
})

t.test('a request without unknown fields logs no warning', async (t) => {
  const before = warnings().length
  await client.completions.create({ model: 'default', prompt: 'Hi', max_tokens: 2 })
  t.equal(warnings().length, before)
})

t.test("the OpenAI SDK's own fields are accepted", async (t) => {
  const res = await client.chat.completions.create(SDK_FIELDS_CHAT)
  t.equal(res.object, 'chat.completion')
  t.ok(res.usage!.completion_tokens > 0)
})

t.test('an assistant message with content null is accepted', async (t) => {
  const res = await client.chat.completions.create({
    model: 'default',
    messages: [
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: null },
      { role: 'user', content: 'Again' },
    ],
    max_tokens: 4,
  })
  t.type(res.choices[0]!.message.content, 'string')
})

// The field refusals (each a 400 naming its param) are checked through inject(): test/server/http/chat.test.ts.

t.test('models.retrieve returns the served model; another id is a 404 naming model', async (t) => {
  const model = await client.models.retrieve('default')
  t.equal(model.id, 'default')
  t.equal(model.object, 'model')
  t.equal(model.owned_by, 'spanserve')
  t.type(model.created, 'number')
  const list = await client.models.list()
  t.equal(list.data[0]!.id, model.id)
  const err = await client.models.retrieve('gpt-9').then(
    () => null,
    (e: unknown) => e as { status?: number; param?: string; code?: string },
  )
  t.equal(err?.status, 404)
  t.equal(err?.code, 'SPANSERVE_ERR_MODEL_NOT_FOUND')
  t.equal(err?.param, 'model')
})

t.test('continuous_usage_stats: every chunk carries the usage so far', async (t) => {
  const stream = await client.chat.completions.create({
    model: 'default',
    messages: [{ role: 'user', content: 'Tell me a story' }],
    max_tokens: 8,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    // vLLM's extension of stream_options.
    stream_options: { include_usage: true, continuous_usage_stats: true } as OpenAI.ChatCompletionStreamOptions,
  } as OpenAI.ChatCompletionCreateParamsStreaming)
  const seen: number[] = []
  let prompt = -1
  for await (const chunk of stream) {
    t.ok(chunk.usage, 'usage on every chunk')
    if (prompt < 0) prompt = chunk.usage!.prompt_tokens
    t.equal(chunk.usage!.prompt_tokens, prompt)
    t.equal(chunk.usage!.total_tokens, chunk.usage!.prompt_tokens + chunk.usage!.completion_tokens)
    seen.push(chunk.usage!.completion_tokens)
  }
  t.same(
    [...seen].sort((a, b) => a - b),
    seen,
    'completion_tokens never go down',
  )
  t.equal(seen.at(-1), 8)
})
