/**
 * LangChain's ChatOpenAI (@langchain/openai) against the real server, as an app uses it: invoke,
 * stream with usage, extra fields through modelKwargs, bindTools with a required call, and
 * withStructuredOutput(zodSchema) by each of its methods.
 */
import t from 'tap'
import { ChatOpenAI } from '@langchain/openai'
import type { AIMessageChunk, AIMessage } from '@langchain/core/messages'
import { tool } from '@langchain/core/tools'
import { z } from 'zod'
import { checkPerson, person } from '../helpers/person-schema.ts'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()

const llm = (fields: Record<string, unknown> = {}) =>
  new ChatOpenAI({ model: 'default', apiKey: 'unused', configuration: { baseURL: server.url + '/v1' }, maxRetries: 0, maxTokens: 16, temperature: 0, ...fields })

t.test('invoke: an AIMessage with text and token usage', async (t) => {
  const msg = await llm().invoke([
    ['system', 'You tell stories.'],
    ['human', 'Once upon a time'],
  ])
  t.type(msg.content, 'string')
  t.ok((msg.content as string).length > 0, 'some text')
  t.notMatch(msg.content as string, /[\uFFFD\u0000-\u0008\u000b-\u001f]/, 'text only')
  t.ok(msg.usage_metadata!.input_tokens > 0)
  t.ok(msg.usage_metadata!.output_tokens > 0)
  t.equal(msg.usage_metadata!.total_tokens, msg.usage_metadata!.input_tokens + msg.usage_metadata!.output_tokens)
  // The embedded model may end its answer before max_tokens: each finish reason with its own count.
  const finish = msg.response_metadata.finish_reason as string
  t.ok(
    finish === 'length' ? msg.usage_metadata!.output_tokens === 16 : finish === 'stop' && msg.usage_metadata!.output_tokens < 16,
    `finish_reason ${finish} with ${msg.usage_metadata!.output_tokens} tokens`,
  )
})

t.test('stream: chunks that concatenate to the text, with usage', async (t) => {
  let whole: AIMessageChunk | undefined
  let count = 0
  for await (const chunk of await llm({ streamUsage: true }).stream('Once upon a time')) {
    whole = whole ? whole.concat(chunk) : chunk
    count++
  }
  t.ok(count > 1, `${count} chunks`)
  t.ok((whole!.content as string).length > 0)
  t.ok(whole!.usage_metadata!.output_tokens > 0, 'usage from include_usage')
})

t.test('modelKwargs pass fields this server does not know: ignored, not refused', async (t) => {
  const msg = await llm({ modelKwargs: { chat_template_kwargs: { enable_thinking: false }, my_flag: 1 } }).invoke('Hello')
  t.type(msg.content, 'string')
  await server.waitForLog((l) => Array.isArray(l.ignored_fields) && (l.ignored_fields as string[]).includes('my_flag'))
})

t.test("bindTools with tool_choice 'any': a call to the tool, with arguments that match its schema", async (t) => {
  const weather = tool(async ({ city }: { city: string }) => `sunny in ${city}`, {
    name: 'get_weather',
    description: 'The current weather in a city',
    schema: z.object({ city: z.enum(['Paris', 'Rome', 'Tokyo']) }),
  })
  const msg: AIMessage = await llm({ maxTokens: 256 }).bindTools([weather], { tool_choice: 'any' }).invoke('What is the weather in Paris?')
  t.equal(msg.tool_calls?.length, 1)
  const call = msg.tool_calls![0]!
  t.equal(call.name, 'get_weather')
  t.type(call.args.city, 'string')
  t.ok(call.id, 'the call has an id to answer with a ToolMessage')
  t.equal(msg.response_metadata.finish_reason, 'tool_calls')
  const answer = await weather.invoke(call)
  t.match(answer.content, /^sunny in /)
})

t.test('bindTools, streamed: the call forms over several chunks and assembles', async (t) => {
  const weather = tool(async ({ city }: { city: string }) => `sunny in ${city}`, {
    name: 'get_weather',
    description: 'The current weather in a city',
    schema: z.object({ city: z.enum(['Paris', 'Rome', 'Tokyo']) }),
  })
  let whole: AIMessageChunk | undefined
  let argChunks = 0
  for await (const chunk of await llm({ maxTokens: 256 }).bindTools([weather], { tool_choice: 'any' }).stream('What is the weather in Paris?')) {
    if ((chunk.tool_call_chunks ?? []).some((c) => (c.args ?? '') !== '')) argChunks++
    whole = whole ? whole.concat(chunk) : chunk
  }
  t.ok(argChunks > 1, `the arguments came in ${argChunks} chunks`)
  t.equal(whole!.tool_calls?.length, 1)
  t.equal(whole!.tool_calls![0]!.name, 'get_weather')
  t.type(whole!.tool_calls![0]!.args.city, 'string')
})

t.test('withStructuredOutput(zodSchema), default method (jsonSchema: response_format json_schema)', async (t) => {
  const structured = llm({ maxTokens: 256 }).withStructuredOutput(person, { includeRaw: true })
  const { raw, parsed } = await structured.invoke('Describe a person as JSON.')
  checkPerson(t, parsed)
  t.equal((raw as AIMessage).response_metadata.finish_reason, 'stop', 'the grammar ended the answer, not max_tokens')
  t.same((raw as AIMessage).tool_calls ?? [], [], 'the object came as content (response_format), not as a tool call')
})

t.test("withStructuredOutput(zodSchema, { method: 'jsonSchema', strict: true })", async (t) => {
  const out = await llm({ maxTokens: 256 }).withStructuredOutput(person, { method: 'jsonSchema', strict: true, name: 'person' }).invoke('Describe a person as JSON.')
  checkPerson(t, out)
})

t.test("withStructuredOutput(zodSchema, { method: 'functionCalling' }): a named tool_choice, parsed from the call's arguments", async (t) => {
  const { raw, parsed } = await llm({ maxTokens: 256 }).withStructuredOutput(person, { method: 'functionCalling', name: 'person', includeRaw: true }).invoke('Describe a person.')
  checkPerson(t, parsed)
  const msg = raw as AIMessage
  t.equal(msg.tool_calls?.length, 1)
  t.equal(msg.tool_calls![0]!.name, 'person')
})

t.test("withStructuredOutput(zodSchema, { method: 'functionCalling' }).stream(): the tool-call deltas assemble to the object", async (t) => {
  let last: unknown
  let chunks = 0
  for await (const out of await llm({ maxTokens: 256 }).withStructuredOutput(person, { method: 'functionCalling', name: 'person' }).stream('Describe a person.')) {
    last = out
    chunks++
  }
  t.ok(chunks >= 1, `${chunks} chunks`)
  checkPerson(t, last)
})

t.test('withStructuredOutput(zodSchema).stream() (jsonSchema): the streamed content parses to the object', async (t) => {
  let last: unknown
  for await (const out of await llm({ maxTokens: 256 }).withStructuredOutput(person).stream('Describe a person.')) last = out
  checkPerson(t, last)
})
