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
