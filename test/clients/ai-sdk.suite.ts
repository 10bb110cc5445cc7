/**
 * The Vercel AI SDK (ai + @ai-sdk/openai-compatible) against the real server, as an app uses it:
 * generateText and streamText with usage, tools with toolChoice "required", and structured output
 * (generateObject, streamObject, generateText with Output.object) through response_format json_schema.
 */
import t from 'tap'
import { generateObject, generateText, Output, streamObject, streamText, tool } from 'ai'
import { createOpenAICompatible } from '@ai-sdk/openai-compatible'
import { z } from 'zod'
import { checkPerson, person } from '../helpers/person-schema.ts'
import { sharedServer } from '../helpers/shared-server.ts'

const server = await sharedServer()
const provider = createOpenAICompatible({ name: 'spanserve', baseURL: server.url + '/v1', apiKey: 'unused', includeUsage: true })
const model = provider('default')

t.test('generateText: text, finish reason and usage', async (t) => {
  const res = await generateText({ model, prompt: 'Once upon a time', maxOutputTokens: 12, temperature: 0, maxRetries: 0 })
  t.ok(res.text.length > 0)
  t.notMatch(res.text, /[\uFFFD\u0000-\u0008\u000b-\u001f]/, 'text only')
  // The embedded model may end its answer before maxOutputTokens: each finish reason with its own count.
  t.ok(
    res.finishReason === 'length' ? res.usage.outputTokens === 12 : res.finishReason === 'stop' && res.usage.outputTokens! < 12,
    `finishReason ${res.finishReason} with ${res.usage.outputTokens} tokens`,
  )
  t.ok(res.usage.inputTokens! > 0)
  t.equal(res.usage.totalTokens, res.usage.inputTokens! + res.usage.outputTokens!)
})

t.test('streamText: the text stream and the usage at its end', async (t) => {
  const res = streamText({ model, prompt: 'Once upon a time', maxOutputTokens: 12, temperature: 0, maxRetries: 0 })
  let text = ''
  let parts = 0
  for await (const delta of res.textStream) {
    text += delta
    parts++
  }
  t.ok(parts > 1, `${parts} deltas`)
  t.equal(text, await res.text)
  const usage = await res.usage
  const finish = await res.finishReason
  t.ok(finish === 'length' ? usage.outputTokens === 12 : finish === 'stop' && usage.outputTokens! < 12, `finishReason ${finish} with ${usage.outputTokens} tokens`)
  t.ok(usage.inputTokens! > 0)
})

t.test("tools with toolChoice 'required': a call whose input matches the schema, executed", async (t) => {
  const seen: string[] = []
  const res = await generateText({
    model,
    prompt: 'What is the weather in Paris?',
    maxOutputTokens: 256,
    maxRetries: 0,
    toolChoice: 'required',
    tools: {
      get_weather: tool({
        description: 'The current weather in a city',
        inputSchema: z.object({ city: z.enum(['Paris', 'Rome', 'Tokyo']) }),
        execute: async ({ city }) => {
          seen.push(city)
          return `sunny in ${city}`
        },
      }),
    },
  })
  t.equal(res.finishReason, 'tool-calls')
  t.equal(res.toolCalls.length, 1)
  t.equal(res.toolCalls[0]!.toolName, 'get_weather')
  t.type((res.toolCalls[0]!.input as { city: unknown }).city, 'string')
  t.equal(seen.length, 1, 'the tool ran with the parsed input')
  t.match(res.toolResults[0]!.output, /^sunny in /)
})

t.test("streamText with toolChoice 'required': the call's input streams in deltas, then the call", async (t) => {
  const res = streamText({
    model,
    prompt: 'What is the weather in Paris?',
    maxOutputTokens: 256,
    maxRetries: 0,
    toolChoice: 'required',
    tools: { get_weather: tool({ description: 'The current weather in a city', inputSchema: z.object({ city: z.enum(['Paris', 'Rome', 'Tokyo']) }) }) },
  })
  let deltas = 0
  let input = ''
  let started = 0
  for await (const part of res.fullStream) {
    if (part.type === 'tool-input-start') started++
    if (part.type === 'tool-input-delta') {
      deltas++
      input += part.delta
    }
  }
  t.equal(started, 1)
  t.ok(deltas > 1, `${deltas} input deltas`)
  const calls = await res.toolCalls
  t.equal(calls.length, 1)
  t.equal(calls[0]!.toolName, 'get_weather')
  t.same(calls[0]!.input, JSON.parse(input))
  t.equal(await res.finishReason, 'tool-calls')
})

// As a vLLM user configures the provider: with supportsStructuredOutputs the SDK sends
// response_format json_schema (strict) instead of a bare json_object, so the server constrains the
// output to the schema itself.
const structured = createOpenAICompatible({ name: 'spanserve', baseURL: server.url + '/v1', apiKey: 'unused', includeUsage: true, supportsStructuredOutputs: true })('default')

t.test('generateObject with a zod schema: response_format json_schema, an object that matches it', async (t) => {
  const res = await generateObject({ model: structured, schema: person, schemaName: 'person', prompt: 'Describe a person.', maxOutputTokens: 256, temperature: 0, maxRetries: 0 })
  checkPerson(t, res.object)
  t.equal(res.finishReason, 'stop', 'the grammar ended the answer, not max tokens')
  t.same(res.warnings ?? [], [], 'no "unsupported" warning: the schema went to the server')
  t.ok(res.usage.outputTokens! > 0 && res.usage.outputTokens! < 256)
})

t.test("generateObject with output 'enum': one of the values", async (t) => {
  const res = await generateObject({ model: structured, output: 'enum', enum: ['red', 'green', 'blue'], prompt: 'Pick a colour.', maxOutputTokens: 64, temperature: 0, maxRetries: 0 })
  t.ok(['red', 'green', 'blue'].includes(res.object), `got ${res.object}`)
})

t.test('streamObject with a zod schema: partial objects, then the whole that matches it', async (t) => {
  const res = streamObject({ model: structured, schema: person, prompt: 'Describe a person.', maxOutputTokens: 256, temperature: 0.8, seed: 7, maxRetries: 0 })
  let partials = 0
  for await (const partial of res.partialObjectStream) {
    t.type(partial, 'object')
    partials++
  }
  t.ok(partials > 1, `${partials} partial objects`)
  checkPerson(t, await res.object)
  t.ok((await res.usage).outputTokens! > 0, 'usage at the end of the stream')
})

t.test('generateText with Output.object (the AI SDK 6 form of structured output)', async (t) => {
  const res = await generateText({ model: structured, output: Output.object({ schema: person }), prompt: 'Describe a person.', maxOutputTokens: 256, temperature: 0, maxRetries: 0 })
  checkPerson(t, res.output)
})
