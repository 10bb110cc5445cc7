/**
 * POST /v1/chat/completions through inject() against a scripted engine: messages, tools, tool_choice,
 * max_tokens, logprobs and response_format become the GenerateReqInput; the engine's text comes back
 * as the assistant message or its deltas, read for tool calls (hermes) and reasoning when asked.
 */
import t from 'tap'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { logprobs, tokens } from '../../helpers/scripted-engine.ts'
import { parseSse } from '../../helpers/sse.ts'
import { SDK_FIELDS_CHAT } from '../../helpers/sdk-fields.ts'

const weather = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
}
const user = [{ role: 'user', content: 'Hello' }]

t.test('messages become the chat messages the template reads', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const res = await post(app, '/v1/chat/completions', {
    model: 'default',
    messages: [
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Weather in ' },
          { type: 'text', text: 'Paris?' },
        ],
        name: 'ann',
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: 'not json' } },
        ],
      },
      { role: 'tool', content: 'sunny', tool_call_id: 'call_1' },
      { role: 'developer', content: 'Answer in French.' },
    ],
  })
  t.equal(res.statusCode, 200)
  const req = engine.requests[0]!
  t.strictSame(req.messages, [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Weather in Paris?', name: 'ann' },
    // Arguments as an object where they are JSON (templates write them with tojson), else as given.
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
        { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: 'not json' } },
      ],
    },
    { role: 'tool', content: 'sunny', tool_call_id: 'call_1' },
    { role: 'developer', content: 'Answer in French.' },
  ])
  t.equal(req.text, null)
  t.equal(req.inputIds, null)
})

t.test('max_tokens: the rest of the context when left out (-1); max_completion_tokens wins over max_tokens', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/chat/completions', { model: 'default', messages: user })
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, max_tokens: 7 })
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, max_tokens: 7, max_completion_tokens: 5 })
  t.same(
    engine.requests.map((r) => r.maxTokens),
    [-1, 7, 5],
  )
})

t.test('sampling fields and stop map as for completions', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, temperature: 0, top_p: 0.5, seed: 3, stop: ['\n\n'], logit_bias: { '5': -100 }, ignore_eos: true })
  const req = engine.requests[0]!
  t.strictSame(req.sampling, { temperature: 0, topP: 0.5, topK: 0, seed: 3, logitBias: [[5, -100]] })
  t.strictSame(req.stop, ['\n\n'])
  t.equal(req.ignoreEos, true)
})

t.test('tools: shown to the template; tool_choice none hides them; required and a named function constrain the output', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather] })
  const listed = [{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather.function.parameters } }]
  t.strictSame(engine.requests[0]!.tools, listed, 'auto: listed')
  t.notOk('constraint' in engine.requests[0]!.sampling, 'auto: the model is free')
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather], tool_choice: 'none' })
  t.equal(engine.requests[1]!.tools, null, 'none: the template shows no tools')
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather], tool_choice: 'required' })
  const required = engine.requests[2]!.sampling.constraint!
  t.match(required, { type: 'tool_calls', calls: { functions: [{ name: 'get_weather' }], single: true, format: 'hermes' }, param: 'tools' })
  if (required.type === 'tool_calls') t.same(JSON.parse(required.calls.functions[0]!.parameters), weather.function.parameters, "the function's parameter schema")
  await post(app, '/v1/chat/completions', {
    model: 'default',
    messages: user,
    tools: [weather, { type: 'function', function: { name: 'other' } }],
    tool_choice: { type: 'function', function: { name: 'other' } },
    parallel_tool_calls: true,
  })
  t.match(engine.requests[3]!.sampling.constraint, { type: 'tool_calls', calls: { functions: [{ name: 'other' }], single: true }, param: 'tool_choice' })
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather], tool_choice: 'required', parallel_tool_calls: true })
  t.match(engine.requests[4]!.sampling.constraint, { type: 'tool_calls', calls: { single: false } }, 'required with parallel_tool_calls: several calls allowed')
})

t.test('response_format and guided_* become the output constraint; two at once are a 400 naming the second', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } })
  const c = engine.requests[0]!.sampling.constraint!
  t.equal(c.type, 'json_schema')
  t.equal(c.param, 'response_format.json_schema.schema')
  if (c.type === 'json_schema') t.same(JSON.parse(c.schema), schema)
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, response_format: { type: 'json_object' } })
  t.strictSame(engine.requests[1]!.sampling.constraint, { type: 'json_object', param: 'response_format' })
  await post(app, '/v1/chat/completions', { model: 'default', messages: user, response_format: { type: 'text' } })
  t.notOk('constraint' in engine.requests[2]!.sampling, 'text: no constraint')
  await post(app, '/v1/completions', { model: 'default', prompt: 'Pick', guided_choice: ['yes', 'no'] })
  t.strictSame(engine.requests[3]!.sampling.constraint, { type: 'choice', choices: ['yes', 'no'], param: 'guided_choice' }, 'completions take them too')
  const two = await post(app, '/v1/chat/completions', { model: 'default', messages: user, response_format: { type: 'json_object' }, guided_regex: 'a+' })
  t.equal(two.statusCode, 400)
  t.equal(errorOf(two).param, 'guided_regex')
  t.equal(engine.requests.length, 4, 'refused before the engine')
})

t.test('whole: one assistant message with the text, finish_reason and usage', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['Hi', ' there'], 'stop')
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hello you' }] })
  const body = res.json()
  t.strictSame(body, {
    id: `chatcmpl-${engine.requests[0]!.rid}`,
    created: body.created,
    model: 'default',
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hi there' }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 },
  })
})

t.test('streamed: the role in the first delta, content deltas, an empty delta with the finish, [DONE]; usage only when asked', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [...tokens(['Hi', ' there'], 'stop').map((o) => ({ ...o, finishReason: null })), { text: '', finishReason: 'length' as const }]
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: user, stream: true })
  const sse = parseSse(res.body)
  t.ok(sse.done)
  t.same(
    sse.chunks.map((c) => (c.choices as unknown[])[0]),
    [
      { index: 0, delta: { role: 'assistant', content: 'Hi' }, logprobs: null, finish_reason: null },
      { index: 0, delta: { content: ' there' }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'length' },
    ],
  )
  for (const c of sse.chunks) {
    t.equal(c.object, 'chat.completion.chunk')
    t.equal(c.id, `chatcmpl-${engine.requests[0]!.rid}`)
    t.notOk('usage' in c)
  }
  const withUsage = parseSse((await post(app, '/v1/chat/completions', { model: 'default', messages: user, stream: true, stream_options: { include_usage: true } })).body)
  t.strictSame(withUsage.chunks.at(-1), { ...withUsage.chunks[0], object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } })
})

t.test('logprobs: true asks the engine for top_logprobs and answers in the chat shape; top_logprobs alone is a 400', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [
    {
      text: 'é',
      finishReason: 'stop',
      logprobs: logprobs('é', -0.5, [
        ['é', -0.5],
        ['e', -1.5],
      ]),
    },
  ]
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: user, logprobs: true, top_logprobs: 2 })
  t.equal(engine.requests[0]!.sampling.logprobs, 2)
  t.strictSame(res.json().choices[0].logprobs, {
    content: [
      {
        token: 'é',
        logprob: -0.5,
        bytes: [0xc3, 0xa9],
        top_logprobs: [
          { token: 'é', logprob: -0.5, bytes: [0xc3, 0xa9] },
          { token: 'e', logprob: -1.5, bytes: [0x65] },
        ],
      },
    ],
    refusal: null,
  })
  const streamed = parseSse((await post(app, '/v1/chat/completions', { model: 'default', messages: user, logprobs: true, stream: true })).body)
  t.equal(engine.requests[1]!.sampling.logprobs, 0, 'logprobs without top_logprobs: the sampled token only')
  t.same(
    (streamed.chunks[0]!.choices as { logprobs: { content: { token: string }[] } }[])[0]!.logprobs.content.map((c) => c.token),
    ['é'],
  )
  const bad = await post(app, '/v1/chat/completions', { model: 'default', messages: user, top_logprobs: 2 })
  t.equal(bad.statusCode, 400)
  t.equal(errorOf(bad).param, 'top_logprobs')
})

const call = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}\n</tool_call>']

t.test('tool calls in the text come back as message.tool_calls with finish_reason tool_calls', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(call, 'stop')
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather] })
  const choice = res.json().choices[0]
  t.equal(choice.finish_reason, 'tool_calls')
  t.equal(choice.message.content, null)
  t.match(choice.message.tool_calls, [{ id: /^call_/, type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }])
  t.equal(choice.message.tool_calls.length, 1)
  // Without tools the same text is plain content.
  const plain = await post(app, '/v1/chat/completions', { model: 'default', messages: user })
  t.equal(plain.json().choices[0].message.content, call.join(''))
  t.equal(plain.json().choices[0].finish_reason, 'stop')
})

t.test('streamed tool calls: an opening delta with id and name, then the arguments as they come', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(call, 'stop')
  const sse = parseSse((await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather], stream: true })).body)
  const deltas = sse.chunks.map((c) => (c.choices as { delta: { tool_calls?: { index: number; id?: string; function: { name?: string; arguments: string } }[] } }[])[0]!.delta)
  const calls = deltas.flatMap((d) => d.tool_calls ?? [])
  t.match(calls[0], { index: 0, id: /^call_/, type: 'function', function: { name: 'get_weather', arguments: '' } })
  t.ok(calls.length > 2, 'the arguments in several deltas')
  t.equal(calls.map((c) => c.function.arguments).join(''), '{"city": "Paris"}')
  t.equal((sse.chunks.at(-1)!.choices as { finish_reason: string }[])[0]!.finish_reason, 'tool_calls')
})

t.test('--reasoning-parser qwen3: <think> text comes back as reasoning_content, whole and streamed', async (t) => {
  const { app, engine } = await scriptedApp(t, { argv: ['--reasoning-parser', 'qwen3'] })
  engine.script = () => tokens(['<think>', 'hmm', '</think>', 'Answer'], 'stop')
  const whole = await post(app, '/v1/chat/completions', { model: 'default', messages: user })
  t.strictSame(whole.json().choices[0].message, { role: 'assistant', content: 'Answer', reasoning_content: 'hmm' })
  const sse = parseSse((await post(app, '/v1/chat/completions', { model: 'default', messages: user, stream: true })).body)
  const deltas = sse.chunks.map((c) => (c.choices as { delta: Record<string, string> }[])[0]!.delta)
  t.equal(deltas.map((d) => d.reasoning_content ?? '').join(''), 'hmm')
  t.equal(deltas.map((d) => d.content ?? '').join(''), 'Answer')
})

t.test('--tool-call-parser none: a request that asks for tool calls is a 400 naming tool_choice', async (t) => {
  const { app, engine } = await scriptedApp(t, { argv: ['--tool-call-parser', 'none'] })
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: user, tools: [weather] })
  t.equal(res.statusCode, 400)
  t.equal(errorOf(res).param, 'tool_choice')
  t.equal(engine.requests.length, 0)
})

t.test("the OpenAI SDK's bookkeeping fields are accepted and change nothing that reaches the engine", async (t) => {
  const { app, engine } = await scriptedApp(t)
  const res = await post(app, '/v1/chat/completions', SDK_FIELDS_CHAT)
  t.equal(res.statusCode, 200)
  t.strictSame(engine.requests[0]!.sampling, { temperature: 1, topP: 1, topK: 0, seed: null })
  t.equal(engine.requests[0]!.maxTokens, 4)
})

const chat = { model: 'default', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 2 }
const refusals: [string, Record<string, unknown>, string][] = [
  ['metadata not an object', { ...chat, metadata: 5 }, 'metadata'],
  ['metadata value not a string', { ...chat, metadata: { a: 1 } }, 'metadata.a'],
  ['store not a boolean', { ...chat, store: 'yes' }, 'store'],
  ['audio output asked for', { ...chat, modalities: ['text', 'audio'] }, 'modalities'],
  ['unknown reasoning effort', { ...chat, reasoning_effort: 'extreme' }, 'reasoning_effort'],
  [
    'a tool message without tool_call_id',
    {
      ...chat,
      messages: [
        { role: 'user', content: 'x' },
        { role: 'tool', content: 'y' },
      ],
    },
    'messages.1',
  ],
  ['a user message without content', { ...chat, messages: [{ role: 'user' }] }, 'messages.0'],
  ['a user message with content null', { ...chat, messages: [{ role: 'user', content: null }] }, 'messages.0.content'],
  ['tool_choice without tools', { ...chat, tool_choice: 'required' }, 'tool_choice'],
  ['tool_choice naming a tool not given', { ...chat, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice'],
  ['a tool with a bad name', { ...chat, tools: [{ type: 'function', function: { name: 'has space' } }] }, 'tools.0.function.name'],
  [
    'two tools of one name',
    {
      ...chat,
      tools: [
        { type: 'function', function: { name: 'f' } },
        { type: 'function', function: { name: 'f' } },
      ],
    },
    'tools.1.function.name',
  ],
  ['continuous_usage_stats not a boolean', { ...chat, stream: true, stream_options: { include_usage: true, continuous_usage_stats: 'yes' } }, 'stream_options.continuous_usage_stats'],
  ['no messages', { ...chat, messages: [] }, 'messages'],
  ['an unknown role', { ...chat, messages: [{ role: 'wizard', content: 'x' }] }, 'messages.0.role'],
]
t.test('invalid fields: a 400 in OpenAI shape whose param names the field; nothing reaches the engine', async (t) => {
  const { app, engine } = await scriptedApp(t)
  for (const [name, body, param] of refusals) {
    const res = await post(app, '/v1/chat/completions', body)
    t.equal(res.statusCode, 400, `${name}: 400`)
    const e = errorOf(res)
    t.equal(e.param, param, `${name}: param ${param}`)
    t.equal(e.type, 'invalid_request_error', `${name}: type`)
    t.match(e.code, /^SPANSERVE_ERR_(VALIDATION|INVALID_REQUEST)$/, `${name}: code`)
    t.type(e.message, 'string')
  }
  t.equal(engine.requests.length, 0)
})
