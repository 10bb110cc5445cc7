/**
 * Structured output through the real server and processes, driven by the `openai` client: what
 * the embedded model (a small n-gram-trained model that knows no JSON) writes under a constraint
 * parses and matches it, because every token the constraint does not allow is masked in the
 * worker's sampler; a constraint that does not compile is OpenAI's 400 naming the field.
 */
import t from 'tap'
import OpenAI from 'openai'
import { Ajv } from 'ajv'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const ajv = new Ajv()

const recipe = {
  type: 'object',
  properties: {
    dish: { type: 'string', maxLength: 24 },
    minutes: { type: 'integer', minimum: 1, maximum: 240 },
    vegetarian: { type: 'boolean' },
    course: { enum: ['starter', 'main', 'dessert'] },
    steps: { type: 'array', items: { type: 'string', maxLength: 16 }, minItems: 1, maxItems: 3 },
  },
  required: ['dish', 'minutes', 'vegetarian', 'course', 'steps'],
  additionalProperties: false,
}
const messages = [{ role: 'user' as const, content: 'Tell me a recipe.' }]
const responseFormat = { type: 'json_schema' as const, json_schema: { name: 'recipe', strict: true, schema: recipe } }

t.test('response_format json_schema (strict): the content parses and matches the schema', async (t) => {
  for (const [temperature, seed] of [
    [0, 1],
    [1, 2],
    [1, 3],
    [1.3, 4],
  ] as const) {
    const res = await client.chat.completions.create({ model: 'default', messages, response_format: responseFormat, max_tokens: 200, temperature, seed })
    const choice = res.choices[0]!
    t.equal(choice.finish_reason, 'stop', 'ended by EOS once the JSON was complete')
    const value = JSON.parse(choice.message.content!) as unknown
    t.ok(ajv.validate(recipe, value), `${choice.message.content} matches: ${ajv.errorsText()}`)
  }
})

t.test('streamed, the deltas join into JSON that matches the schema', async (t) => {
  const stream = await client.chat.completions.create({ model: 'default', messages, response_format: responseFormat, max_tokens: 200, temperature: 1, seed: 5, stream: true })
  let text = ''
  let finish: string | null = null
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
  }
  t.equal(finish, 'stop')
  t.ok(ajv.validate(recipe, JSON.parse(text)), text)
})

t.test('response_format json_object: the content is a JSON object', async (t) => {
  const res = await client.chat.completions.create({ model: 'default', messages, response_format: { type: 'json_object' }, max_tokens: 400, temperature: 0 })
  const choice = res.choices[0]!
  t.equal(choice.finish_reason, 'stop')
  const value = JSON.parse(choice.message.content!) as unknown
  t.ok(value !== null && typeof value === 'object' && !Array.isArray(value), choice.message.content!)
})

t.test("vLLM's guided_choice and guided_regex, on completions too", async (t) => {
  const choices = ['sunny', 'rainy', 'windy']
  for (const seed of [1, 2, 3]) {
    const body = { model: 'default', prompt: 'The weather today is', max_tokens: 20, temperature: 1, seed, guided_choice: choices }
    const res = await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming)
    t.ok(choices.includes(res.choices[0]!.text), res.choices[0]!.text)
  }
  const body = { model: 'default', messages, max_tokens: 40, temperature: 1, seed: 9, structured_outputs: { regex: '[A-Z][a-z]{2,8} [0-9]{1,3} g' } }
  const res = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming)
  t.match(res.choices[0]!.message.content, /^[A-Z][a-z]{2,8} [0-9]{1,3} g$/)
})

t.test('tool_choice required / a named function: a call to a listed function whose arguments match its schema', async (t) => {
  const weather = { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['city', 'unit'], additionalProperties: false }
  const tools = [
    { type: 'function' as const, function: { name: 'get_weather', description: 'Weather in a city', parameters: weather } },
    {
      type: 'function' as const,
      function: {
        name: 'get_time',
        description: 'Time in a city',
        parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 } }, required: ['city'], additionalProperties: false },
      },
    },
  ]
  const ask = [{ role: 'user' as const, content: 'What is the weather in Paris?' }]
  for (const [toolChoice, seed] of [
    ['required', 1],
    ['required', 2],
    [{ type: 'function', function: { name: 'get_weather' } }, 3],
  ] as const) {
    const res = await client.chat.completions.create({ model: 'default', messages: ask, tools, tool_choice: toolChoice, max_tokens: 200, temperature: 1, seed })
    const choice = res.choices[0]!
    t.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message))
    const calls = choice.message.tool_calls ?? []
    t.ok(calls.length >= 1, 'at least one call')
    for (const call of calls) {
      if (call.type !== 'function') continue
      if (typeof toolChoice === 'object') t.equal(call.function.name, 'get_weather', 'the named function')
      const schema = tools.find((x) => x.function.name === call.function.name)?.function.parameters
      t.ok(schema, `${call.function.name} is a listed function`)
      t.ok(ajv.validate(schema!, JSON.parse(call.function.arguments)), `${call.function.name}(${call.function.arguments})`)
    }
  }
})

t.test('a schema, regex or grammar that does not compile: 400 naming the field and the reason', async (t) => {
  const post = async (path: string, body: object) => {
    const res = await fetch(`${server.url}/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', max_tokens: 8, ...body }) })
    return { status: res.status, body: (await res.json()) as { error: { message: string; type: string; param: string | null; code: string } } }
  }
  const cases: [string, object, string, RegExp][] = [
    [
      'chat/completions',
      { messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'objec' } } } },
      'response_format.json_schema.schema',
      /`type` at \/type "objec" is not a JSON Schema type/,
    ],
    ['chat/completions', { messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { $ref: '#/$defs/gone' } } } }, 'response_format.json_schema.schema', /gone/],
    ['completions', { prompt: 'a', guided_regex: '(?<=x)y' }, 'guided_regex', /Lookbehind/],
    ['completions', { prompt: 'a', guided_grammar: 'root ::= nowhere' }, 'guided_grammar', /nowhere/],
    ['chat/completions', { messages, response_format: { type: 'json_object' }, guided_choice: ['a'] }, 'guided_choice', /only one output constraint/],
  ]
  for (const [path, body, param, reason] of cases) {
    const { status, body: err } = await post(path, body)
    t.equal(status, 400, JSON.stringify(body))
    t.equal(err.error.type, 'invalid_request_error')
    t.equal(err.error.param, param)
    t.match(err.error.message, reason)
    t.equal(typeof err.error.code, 'string')
  }
  // The server goes on serving constrained requests after the refusals.
  const res = await client.chat.completions.create({ model: 'default', messages, response_format: responseFormat, max_tokens: 200, temperature: 0 })
  t.ok(ajv.validate(recipe, JSON.parse(res.choices[0]!.message.content!)))
})
