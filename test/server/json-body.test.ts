/**
 * Request bodies from bytes to values: the rules Fastify's parser applies (UTF-8, prototype
 * poisoning) plus the depth bound and the prompt precheck, the same on the event loop and in the
 * body thread that big bodies go to.
 */
import t from 'tap'
import { parseJsonBody, type PromptCheck } from '../../src/server/http/json-body/parse.ts'
import { BodyThread, OFF_LOOP_BYTES } from '../../src/server/http/json-body/thread.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
// 100 tokens of at most 4 characters: 401 characters cannot fit.
const check: PromptCheck = { url: '/v1/completions', contextLength: 100, charsPerToken: 4 }

t.test('parseJsonBody: a value, or the refusal a client gets', async (t) => {
  t.same(parseJsonBody(bytes('{"prompt":"hi","n":2}'), check), { kind: 'value', value: { prompt: 'hi', n: 2 } })
  t.match(parseJsonBody(new Uint8Array([0x7b, 0xff, 0x7d]), check), { kind: 'refused', code: 'SPANSERVE_ERR_INVALID_REQUEST', message: 'request body is not valid UTF-8' })
  t.match(parseJsonBody(bytes('['.repeat(200) + ']'.repeat(200)), check), { kind: 'refused', message: /nests objects and arrays more than \d+ deep/ })
  t.match(parseJsonBody(bytes('{"prompt":'), check), { kind: 'syntax' })
  t.match(parseJsonBody(bytes('{"__proto__":{"x":1}}'), check), { kind: 'syntax', message: /prototype/ }, 'prototype poisoning refused, as Fastify does')
  t.match(parseJsonBody(bytes(JSON.stringify({ prompt: 'a'.repeat(401) })), check), { kind: 'refused', code: 'SPANSERVE_ERR_CONTEXT_LENGTH', param: 'prompt' })
  t.match(parseJsonBody(bytes(JSON.stringify({ prompt: 'a'.repeat(401) })), null), { kind: 'value' }, 'no check: no refusal')
})

t.test('the body thread: big bodies parsed off the loop, huge prompts refused there, bytes moved', async (t) => {
  const thread = new BodyThread()
  t.teardown(() => thread.close())
  const fits = bytes(JSON.stringify({ prompt: 'a'.repeat(300), pad: 'x'.repeat(OFF_LOOP_BYTES) }))
  const moved = fits.buffer
  const ok = await thread.parse(fits, check)
  t.equal(ok.kind, 'value')
  t.equal((ok as { value: { prompt: string } }).value.prompt.length, 300)
  t.equal(moved.byteLength, 0, 'the bytes were transferred to the thread, not copied')
  const huge = await thread.parse(bytes(JSON.stringify({ prompt: 'a'.repeat(OFF_LOOP_BYTES) })), check)
  t.match(huge, { kind: 'refused', code: 'SPANSERVE_ERR_CONTEXT_LENGTH', param: 'prompt' })
  const chat = await thread.parse(bytes(JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(OFF_LOOP_BYTES) }] })), { ...check, url: '/v1/chat/completions' })
  t.match(chat, { kind: 'refused', param: 'messages' })
  const answers = await Promise.all([1, 2, 3].map((n) => thread.parse(bytes(JSON.stringify({ n, pad: 'x'.repeat(OFF_LOOP_BYTES) })), null)))
  t.same(
    answers.map((a) => (a as { value: { n: number } }).value.n),
    [1, 2, 3],
    'several at once, each answered by its id',
  )
})
