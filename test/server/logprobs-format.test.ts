/**
 * The server's logprobs shapes, white-box: token texts that are also names on Object.prototype stay
 * keys of the legacy top_logprobs map, and chat's bytes are each token's UTF-8.
 */
import t from 'tap'
import { LogprobsFormatter } from '../../src/server/http/generation/logprobs.ts'
import type { TextLogprobs } from '../../src/ipc/messages.ts'

const entry: TextLogprobs = { token: 'toString', logprob: -3, top: ['constructor', '__proto__', ' é'], topLogprobs: Float32Array.of(-0.5, -1, -2) }

t.test('legacy shape: every top token is an own key, the sampled one added', async (t) => {
  const lp = new LogprobsFormatter('completion', false).format([entry]) as { top_logprobs: Record<string, number>[]; tokens: string[]; text_offset: number[] }
  const map = lp.top_logprobs[0]!
  t.same(Object.keys(map), ['constructor', '__proto__', ' é', 'toString'])
  t.equal(Object.getPrototypeOf(map), Object.prototype, 'the prototype is untouched')
  t.same(JSON.parse(JSON.stringify(map)), { constructor: -0.5, ['__proto__']: -1, ' é': -2, toString: -3 })
  t.same(lp.tokens, ['toString'])
})

t.test('chat shape: bytes of each token, top list in order', async (t) => {
  const lp = new LogprobsFormatter('chat', false).format([entry]) as { content: { token: string; bytes: number[]; top_logprobs: { token: string; logprob: number; bytes: number[] }[] }[] }
  const top = lp.content[0]!.top_logprobs
  t.same(
    top.map((x) => x.token),
    ['constructor', '__proto__', ' é'],
  )
  t.same(
    top.map((x) => x.logprob),
    [-0.5, -1, -2],
  )
  t.same(top[2]!.bytes, [0x20, 0xc3, 0xa9])
  t.same(lp.content[0]!.bytes, [...Buffer.from('toString')])
})
