/**
 * The Responses API (POST /v1/responses) through the real server and the openai client's
 * responses.create, streamed and not, with a function tool and its output sent back, and
 * previous_response_id within the in-memory store.
 */
import t from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

const weather: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'The current weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome', 'Tokyo'] } }, required: ['city'], additionalProperties: false },
  strict: true,
}

t.test('text input with instructions: a completed response with output_text and usage', async (t) => {
  const res = await client.responses.create({ model: 'default', instructions: 'You tell stories.', input: 'Once upon a time', max_output_tokens: 200, temperature: 0 })
  t.match(res.id, /^resp_/)
  t.equal(res.object, 'response')
  t.equal(res.output[0]!.type, 'message')
  t.ok(res.output_text.length > 0, 'output_text, which the SDK joins from the message parts')
  t.notMatch(res.output_text, /[\uFFFD\u0000-\u0008\u000b-\u001f]/)
  t.ok(res.usage!.input_tokens > 0)
  t.equal(res.usage!.total_tokens, res.usage!.input_tokens + res.usage!.output_tokens)
  t.ok(['completed', 'incomplete'].includes(res.status!))
})

t.test('max_output_tokens reached: status incomplete, reason max_output_tokens', async (t) => {
  const res = await client.responses.create({ model: 'default', input: [{ role: 'user', content: 'Tell me a long story' }], max_output_tokens: 3 })
  t.equal(res.status, 'incomplete')
  t.equal(res.incomplete_details?.reason, 'max_output_tokens')
  t.equal(res.usage!.output_tokens, 3)
})

t.test('streamed: the Responses event sequence, deltas that make the final text', async (t) => {
  const stream = await client.responses.create({ model: 'default', input: 'Once upon a time', max_output_tokens: 12, stream: true })
  const types: string[] = []
  let text = ''
  let final: OpenAI.Responses.Response | null = null
  let seq = -1
  for await (const e of stream) {
    types.push(e.type)
    t.equal(e.sequence_number, seq + 1, 'sequence numbers count up')
    seq = e.sequence_number
    if (e.type === 'response.output_text.delta') text += e.delta
    if (e.type === 'response.completed' || e.type === 'response.incomplete') final = e.response
  }
  t.same(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'])
  t.same(types.slice(-4, -1), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done'])
  t.match(types.at(-1), /^response\.(completed|incomplete)$/)
  t.ok(types.includes('response.output_text.delta'))
  // output_text is the SDK's convenience on a created response; a streamed one carries the output items.
  const message = final!.output.find((o) => o.type === 'message')
  t.equal(message?.type === 'message' ? message.content.map((c) => (c.type === 'output_text' ? c.text : '')).join('') : null, text)
  t.ok(final!.usage!.output_tokens <= 12 && final!.usage!.output_tokens > 0)
})

t.test('a required tool: a function_call item; its output sent back with previous_response_id is served', async (t) => {
  const first = await client.responses.create({ model: 'default', input: 'What is the weather in Paris?', tools: [weather], tool_choice: 'required', max_output_tokens: 256 })
  const call = first.output.find((o) => o.type === 'function_call')
  t.ok(call, 'a function_call output item')
  if (call?.type !== 'function_call') return
  t.equal(call.name, 'get_weather')
  t.type((JSON.parse(call.arguments) as { city: unknown }).city, 'string')
  t.match(call.call_id, /^call_/)
  const second = await client.responses.create({
    model: 'default',
    previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' }],
    tools: [weather],
    max_output_tokens: 8,
  })
  t.equal(second.previous_response_id, first.id)
  t.ok(second.usage!.input_tokens > first.usage!.input_tokens, 'the earlier turns are in the prompt')
})

t.test('a required tool, streamed: function call events', async (t) => {
  const stream = await client.responses.create({ model: 'default', input: 'Weather in Rome?', tools: [weather], tool_choice: 'required', max_output_tokens: 256, stream: true })
  let args = ''
  let deltas = 0
  let argsDone: string | null = null
  let done: OpenAI.Responses.ResponseFunctionToolCall | null = null
  for await (const e of stream) {
    if (e.type === 'response.output_item.added' && e.item.type === 'function_call') t.equal(e.item.arguments, '', 'the item opens with no arguments')
    if (e.type === 'response.function_call_arguments.delta') {
      args += e.delta
      deltas++
    }
    if (e.type === 'response.function_call_arguments.done') argsDone = e.arguments
    if (e.type === 'response.output_item.done' && e.item.type === 'function_call') done = e.item
  }
  t.ok(deltas > 1, `the arguments came as they were generated, in ${deltas} deltas`)
  t.equal(argsDone, args)
  t.equal(done?.name, 'get_weather')
  t.equal(done?.arguments, args)
  t.type((JSON.parse(args) as { city: unknown }).city, 'string')
})

t.test('the whole conversation as items, stateless with store: false', async (t) => {
  const res = await client.responses.create({
    model: 'default',
    store: false,
    tools: [weather],
    max_output_tokens: 4,
    input: [
      { role: 'user', content: 'Weather in Paris?' },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
    ],
  })
  const err = await client.responses.create({ model: 'default', previous_response_id: res.id, input: 'and tomorrow?' }).then(
    () => null,
    (e: unknown) => e as { status: number; param: string },
  )
  t.equal(err?.status, 400, 'a response made with store: false is not kept')
  t.equal(err?.param, 'previous_response_id')
})

t.test('text.format json_schema: the output parses and matches', async (t) => {
  const res = await client.responses.create({
    model: 'default',
    input: 'A city and its country',
    max_output_tokens: 100,
    // Bounded strings: the embedded model would otherwise write a string until max_output_tokens.
    text: {
      format: {
        type: 'json_schema',
        name: 'place',
        strict: true,
        schema: { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, country: { type: 'string', maxLength: 16 } }, required: ['city', 'country'], additionalProperties: false },
      },
    },
  })
  const value = JSON.parse(res.output_text) as { city: unknown; country: unknown }
  t.type(value.city, 'string')
  t.type(value.country, 'string')
})

t.test('hosted tools are refused by name', async (t) => {
  const err = await client.responses.create({ model: 'default', input: 'x', tools: [{ type: 'web_search' }] }).then(
    () => null,
    (e: unknown) => e as { status: number; param: string },
  )
  t.equal(err?.status, 400)
  t.match(err?.param, /^tools\.0(\.type)?$/, 'param names the hosted tool')
})
