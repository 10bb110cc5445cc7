/**
 * --reasoning-parser through the real server and the openai client: the embedded model is held by a
 * regex to write `<think>…</think>` and then an answer, and the parser returns the thinking as
 * reasoning_content apart from the content, whole and streamed. The Responses API's reasoning item:
 * responses-reasoning.suite.ts, run here against the same server.
 */
import t from 'tap'
import OpenAI from 'openai'
import { sharedServer } from '../helpers/shared-server.ts'
// The Responses API's reasoning item, on the same server (its tests run first).
import './responses-reasoning.suite.ts'

const server = await sharedServer({ args: ['--reasoning-parser', 'qwen3'] })
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const THINKING = '<think>[a-z]{2,8}( [a-z]{2,8}){1,3}</think>[a-z]{2,8}( [a-z]{2,8}){1,3}'
const base = { model: 'default', messages: [{ role: 'user' as const, content: 'Think, then answer.' }], max_tokens: 120, temperature: 0 }

t.test('whole: the thinking is reasoning_content, the rest is the content', async (t) => {
  const res = await client.chat.completions.create({ ...base, guided_regex: THINKING } as never)
  const message = res.choices[0]!.message as { content: string | null; reasoning_content?: string }
  t.match(message.reasoning_content, /^[a-z]{2,8}( [a-z]{2,8}){1,3}$/, `reasoning: ${JSON.stringify(message.reasoning_content)}`)
  t.match(message.content, /^[a-z]{2,8}( [a-z]{2,8}){1,3}$/, `content: ${JSON.stringify(message.content)}`)
  t.notMatch(message.content ?? '', /think>/)
})

t.test('streamed: reasoning_content deltas, then content deltas, equal to the whole answer', async (t) => {
  const whole = await client.chat.completions.create({ ...base, guided_regex: THINKING } as never)
  const stream = await client.chat.completions.create({ ...base, guided_regex: THINKING, stream: true } as never)
  let reasoning = ''
  let content = ''
  for await (const chunk of stream as unknown as AsyncIterable<{ choices: { delta: { content?: string | null; reasoning_content?: string } }[] }>) {
    const d = chunk.choices[0]?.delta
    reasoning += d?.reasoning_content ?? ''
    content += d?.content ?? ''
  }
  const m = whole.choices[0]!.message as { content: string | null; reasoning_content?: string }
  t.equal(reasoning, m.reasoning_content)
  t.equal(content, m.content)
})
