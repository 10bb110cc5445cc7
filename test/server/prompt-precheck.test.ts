/**
 * The server's early refusal of a prompt too long for the whole context: what each route's text
 * fields count (a lower bound of the rendered prompt), and that it never refuses what may fit.
 */
import t from 'tap'
import { bodyLengthRefusal, promptPrecheck } from '../../src/server/http/prompt-precheck.ts'
import { REFUSED_BEFORE_TOKENIZING } from '../../src/model/prompt-bound.ts'

// 100 tokens of at most 4 characters: 400 characters can fit, 401 cannot.
const check = (url: string, body: unknown, charsPerToken: number | null = 4) => promptPrecheck(url, body, 100, charsPerToken)
const text = (n: number) => 'a'.repeat(n)

t.test('completions: the longest prompt of a batch, strings only', async (t) => {
  t.equal(check('/v1/completions', { prompt: text(400) }), null, 'at the bound it may fit')
  const e = check('/v1/completions', { prompt: text(401) })
  t.equal(e?.code, 'SPANSERVE_ERR_CONTEXT_LENGTH')
  t.equal(e?.param, 'prompt')
  t.match(e?.message, REFUSED_BEFORE_TOKENIZING)
  t.match(e?.message, '401 characters')
  t.equal(check('/v1/completions', { prompt: [text(10), text(401)] })?.param, 'prompt', 'one prompt of a batch over the bound')
  t.equal(check('/v1/completions', { prompt: [text(300), text(300)] }), null, 'a batch is several prompts, not one')
  t.equal(check('/v1/completions', { prompt: [1, 2, 3] }), null, 'token ids are counted exactly elsewhere')
})

t.test('chat: words of system, user and tool messages, in strings and text parts; not the assistant', async (t) => {
  t.equal(
    check('/v1/chat/completions', {
      messages: [
        { role: 'system', content: text(200) },
        { role: 'user', content: [{ type: 'text', text: text(201) }] },
      ],
    })?.param,
    'messages',
  )
  t.equal(
    check('/v1/chat/completions', {
      messages: [
        { role: 'user', content: text(200) },
        { role: 'tool', content: text(200) },
      ],
    }),
    null,
  )
  // A template may drop an earlier turn's reasoning: the assistant's words are not a lower bound.
  t.equal(
    check('/v1/chat/completions', {
      messages: [
        { role: 'assistant', content: text(1000) },
        { role: 'user', content: 'hi' },
      ],
    }),
    null,
  )
})

t.test('responses: instructions plus the input, a string or message items', async (t) => {
  t.equal(check('/v1/responses', { input: text(401) })?.param, 'input')
  t.equal(check('/v1/responses', { instructions: text(200), input: text(201) })?.param, 'input')
  t.equal(check('/v1/responses', { input: [{ role: 'user', content: [{ type: 'input_text', text: text(401) }] }] })?.param, 'input')
  t.equal(check('/v1/responses', { input: [{ type: 'message', role: 'assistant', content: text(401) }] }), null)
})

t.test('tokenize names the field it was given', async (t) => {
  t.equal(check('/tokenize', { prompt: text(401) })?.param, 'prompt')
  t.equal(check('/tokenize', { messages: [{ role: 'user', content: text(401) }] })?.param, 'messages')
})

t.test('no claim without a bound, and none on other routes', async (t) => {
  t.equal(check('/v1/completions', { prompt: text(10_000) }, null), null, 'tokenizer not ready, or a tokenizer that may fuse text')
  t.equal(check('/detokenize', { prompt: text(10_000) }), null)
  t.equal(check('/v1/completions', null), null)
})

t.test('a body longer than any prompt that fits is refused from its length, naming the field', async (t) => {
  // 100 tokens × 4 characters × 6 bytes (a \\uXXXX escape each) + 3 MiB for the other fields.
  const bound = 100 * 4 * 6 + 3 * 2 ** 20
  t.equal(bodyLengthRefusal('/v1/completions', bound, 100, 4), null, 'at the bound it may fit')
  for (const [url, param] of [
    ['/v1/completions', 'prompt'],
    ['/v1/chat/completions', 'messages'],
    ['/v1/responses', 'input'],
  ] as const) {
    const e = bodyLengthRefusal(url, bound + 1, 100, 4)
    t.equal(e?.code, 'SPANSERVE_ERR_CONTEXT_LENGTH', url)
    t.equal(e?.param, param)
    t.match(e?.message, REFUSED_BEFORE_TOKENIZING)
  }
  t.equal(bodyLengthRefusal('/tokenize', 10 * bound, 100, 4), null, "/tokenize's field is known only from its body")
  t.equal(bodyLengthRefusal('/v1/completions', 10 * bound, 100, null), null, 'no bound before the tokenizer is ready')
  t.equal(bodyLengthRefusal('/v1/completions', 10 * bound, 100, Number.POSITIVE_INFINITY), null, 'a tokenizer that may fuse text claims none')
})
