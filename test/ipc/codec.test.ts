import t from 'tap'
import { decode, encode } from '../../src/ipc/codec.ts'
import type { ForwardBatch, BatchTokenIdOutput } from '../../src/ipc/messages.ts'

t.test('typed arrays travel as binary frames and come back equal', async (t) => {
  const msg: ForwardBatch = {
    type: 'forward',
    step: 7,
    prefill: [{ rid: 'a', trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, tokens: Int32Array.of(1, 2, 3, -4), start: 0, last: true, sampling: { temperature: 0, topP: 1, topK: 0, seed: 5 } }],
    decode: ['b', 'c'],
    decodeTokens: Int32Array.of(11, 12),
    decodeSteps: 1,
    release: ['d'],
  }
  const frames = encode(msg)
  t.equal(frames.length, 3, 'one header frame and one frame per typed array')
  t.notMatch(frames[0]!.toString(), /"0":1/, 'the token ids are not in the JSON header')
  const back = decode(frames) as ForwardBatch
  t.same(back.decode, ['b', 'c'])
  t.ok(back.prefill[0]!.tokens instanceof Int32Array)
  t.same([...back.prefill[0]!.tokens], [1, 2, 3, -4])
  t.same(back.prefill[0]!.trace, msg.prefill[0]!.trace, 'the trace carrier survives the hop')
})

t.test('subarrays at an offset encode only their own elements', async (t) => {
  const all = Int32Array.of(9, 8, 7, 6, 5)
  const out: BatchTokenIdOutput = { type: 'batch_token_ids', rids: ['x', 'y'], tokens: all.subarray(1, 3), finished: [null, 'stop'], promptTokens: Int32Array.of(3, 4), stats: [null, { queueMs: 1, prefillMs: 2, decodeMs: 3 }] }
  const frames = encode(out).map((f) => {
    // ZeroMQ may hand frames back at odd byte offsets: decode must not depend on alignment.
    const shifted = Buffer.alloc(f.length + 1)
    f.copy(shifted, 1)
    return shifted.subarray(1)
  })
  const back = decode(frames) as BatchTokenIdOutput
  t.same([...back.tokens], [8, 7])
  t.same([...back.promptTokens], [3, 4])
  t.same(back.finished, [null, 'stop'])
})

t.test('garbage is refused with a DecodeError, not a crash', async (t) => {
  t.throws(() => decode([]), { name: 'DecodeError' })
  t.throws(() => decode([Buffer.from('{"no":"type"}')]), { name: 'DecodeError' })
  t.throws(() => decode([Buffer.from('{"type":"x","a":{"$b":5,"t":"i32"}}')]), { name: 'DecodeError' })
  t.throws(() => decode([Buffer.from('not json')]), SyntaxError)
})
