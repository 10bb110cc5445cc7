/**
 * --tool-call-parser mistral reads `[TOOL_CALLS]`, a special token, so the server asks the tokenizer
 * to keep special tokens in the text of a request with tools (vLLM's parser sets skip_special_tokens
 * false the same way); other requests skip them. Through the real server: the embedded model's EOS,
 * written past with ignore_eos, shows in the text only then, the EOS that ends a generation never
 * does, and logprobs' tokens add up to the text either way.
 */
import t from 'tap'
import OpenAI from 'openai'
import { startServer } from '../../harness/server.ts'

const server = await startServer({ args: ['--tool-call-parser', 'mistral'] })
t.teardown(() => server.stop())
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const base = { model: 'default', messages: [{ role: 'user' as const, content: 'Once upon a time' }], max_tokens: 400, temperature: 0, logprobs: true, tools }

async function chat(extra: Record<string, unknown>): Promise<{ content: string; finish: string; tokens: string[] }> {
  const res = await client.chat.completions.create({ ...base, ...extra } as never)
  const c = res.choices[0]!
  return { content: c.message.content ?? '', finish: c.finish_reason, tokens: c.logprobs!.content!.map((l) => l.token) }
}

t.test('with tools: special tokens kept, the ending EOS not shown', async (t) => {
  const ended = await chat({})
  t.equal(ended.finish, 'stop', 'the model ended on its own (EOS)')
  t.notMatch(ended.content, /<\|/, 'the EOS that ended it is not in the text')
  t.equal(ended.tokens.join(''), ended.content, "logprobs' tokens add up to the text")
  const past = await chat({ ignore_eos: true })
  t.match(past.content, /<\|endoftext\|>/, 'an EOS written past (ignore_eos) is kept in the text')
  t.ok(past.tokens.includes('<|endoftext|>'))
  t.equal(past.tokens.join(''), past.content, "logprobs' tokens add up to the text")
})

t.test('tool_choice none (nothing reads the calls): special tokens skipped', async (t) => {
  const past = await chat({ ignore_eos: true, tool_choice: 'none' })
  t.ok(past.tokens.includes(''), 'an EOS was written past, and reads as nothing')
  t.notMatch(past.content, /<\|/)
  t.equal(past.tokens.join(''), past.content)
})
