import t from 'tap'
import { IncrementalDetokenizer } from '../../src/tokenizer/detokenizer.ts'
import { StopMatcher } from '../../src/tokenizer/stop.ts'

/** A byte-level decoder: each token is one byte of UTF-8, as byte-level BPE can split characters. */
const bytes = { decode: (ids: readonly number[]) => Buffer.from(ids).toString('utf8') }

t.test('a multi-byte character is never cut across chunks', async (t) => {
  const text = 'a café ☃ 日本 🎉!'
  const d = new IncrementalDetokenizer(bytes)
  const chunks = [...Buffer.from(text)].map((b) => d.push(b))
  for (const c of chunks) t.notMatch(c, /\uFFFD/, 'no replacement character is emitted')
  t.equal(chunks.join(''), text, 'the chunks add up to the text')
  t.ok(chunks.filter((c) => c === '').length >= 8, 'incomplete characters were held back')
})

t.test('stop strings end the text and are not returned, even across chunks', async (t) => {
  const s = new StopMatcher(['STOP', '\n\n'])
  let out = ''
  let stopped = false
  for (const piece of ['Hello wor', 'ld ST', 'O', 'P and more']) {
    const r = s.push(piece)
    out += r.text
    if (r.stopped) {
      stopped = true
      break
    }
  }
  t.equal(stopped, true)
  t.equal(out, 'Hello world ', 'text before the stop string, nothing of it')
})

t.test('held-back text is released when no stop string comes', async (t) => {
  const s = new StopMatcher(['STOP'])
  const a = s.push('end ST')
  t.equal(a.text, 'end', 'a possible stop prefix is held back')
  t.equal(a.stopped, false)
  t.equal(s.flush(), ' ST')
  t.same(new StopMatcher([]).push('abc'), { text: 'abc', stopped: false })
})

t.test('the earliest of several stop strings wins', async (t) => {
  const s = new StopMatcher(['cd', 'b'])
  t.same(s.push('abcd'), { text: 'a', stopped: true })
})

t.test('text pushed without matching (min_tokens not reached) never stops, but its tail still can begin a stop string', async (t) => {
  const s = new StopMatcher(['e th'])
  // Tokens " the" " the" under min_tokens 2: "e th" lies wholly in them and is not matched.
  t.same(s.push(' the', false), { text: ' ', stopped: false }, 'the tail that could begin a stop string is held back')
  t.same(s.push(' the', false), { text: 'the ', stopped: false }, 'three characters held back again')
  // The third token is matched: "e th" beginning in the held-back "e" and ending in it stops the text,
  // which adds up to " the th". vLLM's detokenizer does the same: its search after min_tokens reaches
  // a stop string's length minus one back into the earlier text.
  t.same(s.push(' the'), { text: 'th', stopped: true })
})

t.test('a stop string wholly inside unmatched text is not found later, even if it is still held back', async (t) => {
  const s = new StopMatcher(['x', 'long stop'])
  t.same(s.push('ax', false), { text: '', stopped: false }, 'all held back (8 characters may begin "long stop")')
  t.same(s.push('b'), { text: '', stopped: false }, 'the "x" before is not matched once matching begins')
  t.same(s.push('cx'), { text: 'axbc', stopped: true }, 'a new "x" is')
})
