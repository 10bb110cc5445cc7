/**
 * Tools through the real server and the openai client: the chat template receives them, a
 * conversation with assistant tool calls and tool results is served, and a call the model writes
 * comes back as message.tool_calls (streamed as tool-call deltas) with finish_reason "tool_calls".
 * tool_choice "required" and a named function make the embedded model call a tool.
 */
import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

const tools: OpenAI.ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome', 'Tokyo'] } }, required: ['city'], additionalProperties: false },
    },
  },
  {
    type: 'function',
    function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['Europe/Paris', 'Asia/Tokyo'] } }, required: ['zone'], additionalProperties: false } },
  },
]
const question: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }]

t.test('the chat template receives the tools; tool_choice none leaves them out', async (t) => {
  const plain = await client.chat.completions.create({ model: 'default', messages: question, max_tokens: 2 })
  const withTools = await client.chat.completions.create({ model: 'default', messages: question, tools, max_tokens: 2 })
  const none = await client.chat.completions.create({ model: 'default', messages: question, tools, tool_choice: 'none', max_tokens: 2 })
  // The rendered <tools> block: every name and description costs prompt tokens.
  t.ok(withTools.usage!.prompt_tokens > plain.usage!.prompt_tokens + 40, `${withTools.usage!.prompt_tokens} > ${plain.usage!.prompt_tokens} + 40`)
  t.equal(none.usage!.prompt_tokens, plain.usage!.prompt_tokens)
  t.equal(none.choices[0]!.message.tool_calls, undefined)
})

t.test('a conversation with assistant tool calls and tool results is served', async (t) => {
  const res = await client.chat.completions.create({
    model: 'default',
    tools,
    max_tokens: 6,
    messages: [
      ...question,
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
          { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{"zone": "Europe/Paris"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: 'sunny, 21 C' },
      { role: 'tool', tool_call_id: 'call_b', content: '14:05' },
    ],
  })
  t.equal(res.choices[0]!.message.role, 'assistant')
  t.ok(res.usage!.prompt_tokens > 0)
})

function checkCall(t: Test, call: { id: string; type: string; function: { name: string; arguments: string } }, name: string) {
  t.match(call.id, /^call_[0-9a-f]{24}$/)
  t.equal(call.type, 'function')
  t.equal(call.function.name, name)
  const args = JSON.parse(call.function.arguments) as Record<string, unknown>
  t.type(args[name === 'get_weather' ? 'city' : 'zone'], 'string', 'the arguments parse and hold the required field')
}

t.test('tool_choice required: a call whose arguments parse, finish_reason tool_calls', async (t) => {
  const res = await client.chat.completions.create({ model: 'default', messages: question, tools, tool_choice: 'required', max_tokens: 256 })
  const choice = res.choices[0]!
  t.equal(choice.finish_reason, 'tool_calls')
  t.ok(choice.message.tool_calls && choice.message.tool_calls.length >= 1)
  for (const call of choice.message.tool_calls ?? []) {
    if (call.type !== 'function') continue
    t.ok(['get_weather', 'get_time'].includes(call.function.name))
    checkCall(t, call, call.function.name)
  }
})

t.test('a named tool_choice, streamed: tool-call deltas in OpenAI shape', async (t) => {
  const stream = await client.chat.completions.create({
    model: 'default',
    messages: question,
    tools,
    tool_choice: { type: 'function', function: { name: 'get_time' } },
    max_tokens: 256,
    stream: true,
  })
  const calls = new Map<number, { id: string; type: string; function: { name: string; arguments: string } }>()
  let finish: string | null = null
  let fragments = 0
  for await (const chunk of stream) {
    t.equal(chunk.usage ?? undefined, undefined, 'no usage without include_usage, not even on the finish chunk')
    const c = chunk.choices[0]
    if (!c) continue
    for (const d of c.delta.tool_calls ?? []) {
      const have = calls.get(d.index)
      if (!have) {
        // OpenAI's shape: the first delta names the call, with empty arguments.
        t.same(d.function, { name: 'get_time', arguments: '' }, 'the first delta: name, arguments ""')
        calls.set(d.index, { id: d.id!, type: d.type!, function: { name: d.function!.name!, arguments: '' } })
      } else {
        t.same(Object.keys(d).sort(), ['function', 'index'], 'then arguments fragments only')
        have.function.arguments += d.function?.arguments ?? ''
        fragments++
      }
    }
    if (c.finish_reason) finish = c.finish_reason
  }
  t.equal(finish, 'tool_calls')
  t.equal(calls.size, 1, 'a named choice is one call')
  t.ok(fragments > 1, `the arguments came as they were generated, in ${fragments} deltas`)
  checkCall(t, calls.get(0)!, 'get_time')
})

t.test('streamed with include_usage: usage only in the last chunk, whose choices are empty', async (t) => {
  const stream = await client.chat.completions.create({ model: 'default', messages: question, tools, tool_choice: 'required', max_tokens: 256, stream: true, stream_options: { include_usage: true } })
  const chunks: OpenAI.ChatCompletionChunk[] = []
  for await (const chunk of stream) chunks.push(chunk)
  const withUsage = chunks.filter((c) => c.usage)
  t.equal(withUsage.length, 1)
  t.equal(withUsage[0], chunks.at(-1))
  t.same(chunks.at(-1)!.choices, [])
  t.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'tool_calls')
})
