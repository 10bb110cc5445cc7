/**
 * POST /v1/responses through inject() against a scripted engine: instructions, input items, tools,
 * text.format, max_output_tokens and include become the chat request the engine receives; its
 * outputs become the response object or the Responses stream events; previous_response_id continues
 * a stored conversation.
 */
import t from 'tap'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { fail, logprobs, tokens } from '../../helpers/scripted-engine.ts'
import { parseSse } from '../../helpers/sse.ts'

const weather = {
  type: 'function',
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: true,
}
const call = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}\n</tool_call>']

t.test('instructions and input items become the chat messages; max_output_tokens, temperature and top_p the request', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/responses', { model: 'default', instructions: 'You tell stories.', input: 'Once upon a time', max_output_tokens: 9, temperature: 0.5, top_p: 0.25 })
  const req = engine.requests[0]!
  t.strictSame(req.messages, [
    { role: 'system', content: 'You tell stories.' },
    { role: 'user', content: 'Once upon a time' },
  ])
  t.equal(req.maxTokens, 9)
  t.strictSame(req.sampling, { temperature: 0.5, topP: 0.25, topK: 0, seed: null })
  await post(app, '/v1/responses', {
    model: 'default',
    input: [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'Weather in ' },
          { type: 'input_text', text: 'Paris?' },
        ],
      },
      { type: 'reasoning', id: 'rs_1', summary: [] },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'function_call', call_id: 'call_2', name: 'get_weather', arguments: '{"city":"Rome"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
    ],
  })
  t.strictSame(engine.requests[1]!.messages, [
    { role: 'user', content: 'Weather in Paris?' },
    // Consecutive calls are one assistant turn; reasoning items are not replayed.
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
        { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: { city: 'Rome' } } },
      ],
    },
    { role: 'tool', content: 'sunny', tool_call_id: 'call_1' },
  ])
  t.equal(engine.requests[1]!.maxTokens, -1, 'no max_output_tokens: the rest of the context')
})

t.test('tools are listed for the template; tool_choice required constrains; text.format becomes the output constraint', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/responses', { model: 'default', input: 'Hi', tools: [weather] })
  t.strictSame(engine.requests[0]!.tools, [{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather.parameters } }])
  t.notOk('constraint' in engine.requests[0]!.sampling)
  await post(app, '/v1/responses', { model: 'default', input: 'Hi', tools: [weather], tool_choice: { type: 'function', name: 'get_weather' } })
  t.match(engine.requests[1]!.sampling.constraint, { type: 'tool_calls', calls: { functions: [{ name: 'get_weather' }], single: true }, param: 'tool_choice' })
  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
  await post(app, '/v1/responses', { model: 'default', input: 'Hi', text: { format: { type: 'json_schema', name: 'place', schema } } })
  const c = engine.requests[2]!.sampling.constraint!
  t.equal(c.type, 'json_schema')
  if (c.type === 'json_schema') t.same(JSON.parse(c.schema), schema)
  await post(app, '/v1/responses', { model: 'default', input: 'Hi', text: { format: { type: 'json_object' } } })
  t.match(engine.requests[3]!.sampling.constraint, { type: 'json_object' })
  await post(app, '/v1/responses', { model: 'default', input: 'Hi', text: { format: { type: 'text' } } })
  t.notOk('constraint' in engine.requests[4]!.sampling)
})

t.test('a completed response: output_text in a message item, usage in the Responses shape, the request echoed', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['Hello', ' there'], 'stop')
  const res = await post(app, '/v1/responses', { model: 'default', instructions: 'Be kind.', input: 'Hi you', temperature: 0.5, metadata: { run: '1' } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.id, `resp_${engine.requests[0]!.rid}`)
  t.match(body, {
    object: 'response',
    status: 'completed',
    error: null,
    incomplete_details: null,
    instructions: 'Be kind.',
    model: 'default',
    temperature: 0.5,
    metadata: { run: '1' },
    store: true,
    previous_response_id: null,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    usage: { input_tokens: 4, output_tokens: 2, total_tokens: 6, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
  })
  t.type(body.created_at, 'number')
  t.equal(body.output.length, 1)
  t.match(body.output[0], { type: 'message', id: /^msg_/, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello there', annotations: [], logprobs: [] }] })
})

t.test('max_output_tokens reached (finish length): status incomplete, reason max_output_tokens', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['a', 'b', 'c'], 'length')
  const body = (await post(app, '/v1/responses', { model: 'default', input: 'Hi', max_output_tokens: 3 })).json()
  t.equal(body.status, 'incomplete')
  t.strictSame(body.incomplete_details, { reason: 'max_output_tokens' })
  t.equal(body.max_output_tokens, 3)
  t.equal(body.usage.output_tokens, 3)
})

t.test('streamed: created, in_progress, the item and part opened, text deltas, done events, completed; numbered, no [DONE]', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['Once', ' upon'], 'stop')
  const res = await post(app, '/v1/responses', { model: 'default', input: 'Hi', stream: true })
  t.match(res.headers['content-type'], /^text\/event-stream/)
  const sse = parseSse(res.body)
  t.notOk(sse.done, 'the Responses stream ends without data: [DONE]')
  t.same(
    sse.events.map((e) => e.event),
    [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ],
  )
  for (const e of sse.events) t.equal(e.data.type, e.event, 'each event names its type in its data')
  t.same(
    sse.chunks.map((c) => c.sequence_number),
    [...sse.chunks.keys()],
    'sequence numbers from 0',
  )
  t.same(
    sse.chunks.filter((c) => c.type === 'response.output_text.delta').map((c) => c.delta),
    ['Once', ' upon'],
  )
  const created = sse.chunks[0]!.response as Record<string, unknown>
  t.match(created, { id: `resp_${engine.requests[0]!.rid}`, status: 'in_progress', output: [], usage: null })
  const final = sse.chunks.at(-1)!.response as { status: string; output: { content: { text: string }[] }[]; usage: { output_tokens: number } }
  t.equal(final.status, 'completed')
  t.equal(final.output[0]!.content[0]!.text, 'Once upon')
  t.equal(final.usage.output_tokens, 2)
  engine.script = () => tokens(['x'], 'length')
  const cut = parseSse((await post(app, '/v1/responses', { model: 'default', input: 'Hi', stream: true, max_output_tokens: 1 })).body)
  t.equal(cut.events.at(-1)!.event, 'response.incomplete', 'max_output_tokens reached: response.incomplete')
})

t.test('a tool call: a function_call item, whole and streamed with its arguments as they come', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(call, 'stop')
  const body = (await post(app, '/v1/responses', { model: 'default', input: 'Weather in Paris?', tools: [weather] })).json()
  t.equal(body.output.length, 1)
  t.match(body.output[0], { type: 'function_call', id: /^fc_/, call_id: /^call_/, name: 'get_weather', arguments: '{"city": "Paris"}', status: 'completed' })
  const sse = parseSse((await post(app, '/v1/responses', { model: 'default', input: 'Weather in Paris?', tools: [weather], stream: true })).body)
  const added = sse.chunks.find((c) => c.type === 'response.output_item.added')!
  t.match(added.item, { type: 'function_call', name: 'get_weather', arguments: '' })
  const deltas = sse.chunks.filter((c) => c.type === 'response.function_call_arguments.delta').map((c) => c.delta as string)
  t.ok(deltas.length > 1, 'several deltas')
  t.equal(deltas.join(''), '{"city": "Paris"}')
  t.equal(sse.chunks.find((c) => c.type === 'response.function_call_arguments.done')!.arguments, '{"city": "Paris"}')
})

t.test('previous_response_id: the stored conversation, the answer and the new input (not its instructions) go to the engine', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(call, 'stop')
  const first = (await post(app, '/v1/responses', { model: 'default', instructions: 'Be brief.', input: 'Weather in Paris?', tools: [weather] })).json()
  const callId = first.output[0].call_id as string
  engine.script = () => tokens(['Sunny.'], 'stop')
  const second = await post(app, '/v1/responses', {
    model: 'default',
    previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: callId, output: 'sunny, 21 C' }],
    tools: [weather],
  })
  t.equal(second.statusCode, 200)
  t.equal(second.json().previous_response_id, first.id)
  t.strictSame(engine.requests[1]!.messages, [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: '', tool_calls: [{ id: callId, type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
    { role: 'tool', content: 'sunny, 21 C', tool_call_id: callId },
  ])
  const unknown = await post(app, '/v1/responses', { model: 'default', previous_response_id: 'resp_nope', input: 'more' })
  t.equal(unknown.statusCode, 400)
  t.equal(errorOf(unknown).param, 'previous_response_id')
  const unstored = (await post(app, '/v1/responses', { model: 'default', input: 'Hi', store: false })).json()
  t.equal(unstored.store, false)
  const after = await post(app, '/v1/responses', { model: 'default', previous_response_id: unstored.id, input: 'more' })
  t.equal(after.statusCode, 400, 'a response made with store: false is not kept')
  t.equal(errorOf(after).param, 'previous_response_id')
})

t.test('include message.output_text.logprobs: asked of the engine and on the output_text; not without include', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [
    {
      text: 'A',
      logprobs: logprobs('A', -0.25, [
        ['A', -0.25],
        ['B', -2],
      ]),
    },
    {
      text: 'B',
      finishReason: 'stop',
      logprobs: logprobs('B', -0.5, [
        ['B', -0.5],
        ['A', -1],
      ]),
    },
  ]
  const res = (await post(app, '/v1/responses', { model: 'default', input: 'Hi', top_logprobs: 2, include: ['message.output_text.logprobs'] })).json()
  t.equal(engine.requests[0]!.sampling.logprobs, 2)
  t.strictSame(res.output[0].content[0].logprobs, [
    {
      token: 'A',
      logprob: -0.25,
      bytes: [65],
      top_logprobs: [
        { token: 'A', logprob: -0.25, bytes: [65] },
        { token: 'B', logprob: -2, bytes: [66] },
      ],
    },
    {
      token: 'B',
      logprob: -0.5,
      bytes: [66],
      top_logprobs: [
        { token: 'B', logprob: -0.5, bytes: [66] },
        { token: 'A', logprob: -1, bytes: [65] },
      ],
    },
  ])
  t.equal(res.top_logprobs, 2)
  const sse = parseSse((await post(app, '/v1/responses', { model: 'default', input: 'Hi', top_logprobs: 1, include: ['message.output_text.logprobs'], stream: true })).body)
  const deltas = sse.chunks.filter((c) => c.type === 'response.output_text.delta')
  t.same(
    deltas.map((d) => (d.logprobs as { token: string }[]).map((l) => l.token)),
    [['A'], ['B']],
    "each delta carries its tokens' logprobs",
  )
  t.equal((sse.chunks.find((c) => c.type === 'response.output_text.done')!.logprobs as unknown[]).length, 2)
  const plain = (await post(app, '/v1/responses', { model: 'default', input: 'Hi', top_logprobs: 2 })).json()
  t.notOk('logprobs' in engine.requests[2]!.sampling, 'top_logprobs without include asks nothing (vLLM)')
  t.strictSame(plain.output[0].content[0].logprobs, [])
})

t.test('errors: an engine error about messages names input; mid-stream, an error event ends the stream', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [fail('SPANSERVE_ERR_CONTEXT_LENGTH', 'too long', 'messages')]
  const res = await post(app, '/v1/responses', { model: 'default', input: 'Hi' })
  t.equal(res.statusCode, 400)
  t.strictSame(res.json(), { error: { message: 'too long', type: 'invalid_request_error', param: 'input', code: 'SPANSERVE_ERR_CONTEXT_LENGTH' } })
  engine.script = () => [{ text: 'Hel' }, fail('SPANSERVE_ERR_INTERNAL', 'the worker failed')]
  const sse = parseSse((await post(app, '/v1/responses', { model: 'default', input: 'Hi', stream: true })).body)
  const last = sse.events.at(-1)!
  t.equal(last.event, 'error')
  t.match(last.data, { type: 'error', code: 'SPANSERVE_ERR_INTERNAL', message: 'the worker failed', param: null })
  t.notOk(sse.events.some((e) => e.event === 'response.completed'))
  t.notOk(sse.done)
})

t.test('invalid fields: a 400 naming the field; hosted tools are refused by name', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ tools: [{ type: 'web_search' }] }, /^tools\.0(\.type)?$/],
    [{ top_logprobs: 21, include: ['message.output_text.logprobs'] }, /^top_logprobs$/],
    [{ input: [] }, /^input$/],
    [{ max_output_tokens: 0 }, /^max_output_tokens$/],
    [{ background: true }, /^background$/],
    [{ model: 'gpt-9' }, /^model$/],
  ]
  for (const [over, param] of cases) {
    const res = await post(app, '/v1/responses', { model: 'default', input: 'Hi', ...over })
    t.ok(res.statusCode === 400 || res.statusCode === 404, `${JSON.stringify(over)}: refused`)
    t.match(errorOf(res).param, param, `${JSON.stringify(over)}: param`)
  }
  t.equal(engine.requests.length, 0)
})
