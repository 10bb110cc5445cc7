import t from 'tap'
import { decode, encode } from '../../src/ipc/codec.ts'
import type { BatchStrOutput, BatchTokenIdOutput, ForwardBatch } from '../../src/ipc/messages.ts'

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

t.test('a kind with no typed array is one JSON frame; a reference where no frame came is refused', async (t) => {
  const msg: BatchStrOutput = {
    type: 'batch_str',
    items: [{ rid: 'a', text: ' hi', tokenId: 5, finishReason: null, promptTokens: 3, completionTokens: 1, stats: null, logprobs: { token: ' hi', logprob: -0.5, top: [{ token: ' hi', logprob: -0.5 }, { token: '$b', logprob: -2 }] } }],
  }
  const frames = encode(msg)
  t.equal(frames.length, 1)
  t.same(decode(frames), msg, 'comes back equal')
  // A forward whose token ids are a binary reference, with no frame behind it.
  const forward = '{"type":"forward","step":1,"prefill":[{"rid":"a","trace":null,"tokens":{"$b":1,"t":"i32"},"start":0,"last":true,"sampling":null}],"decode":[],"decodeTokens":{"$b":1,"t":"i32"},"decodeSteps":1,"release":[]}'
  t.throws(() => decode([Buffer.from(forward)]), { name: 'DecodeError' }, 'one frame: the reference is no typed array, and the schema says so')
  t.throws(() => decode([Buffer.from(forward.replace('"tokens":{"$b":1', '"tokens":{"$b":7')), Buffer.alloc(4)]), { name: 'DecodeError' }, 'a reference to a frame that is not there')
  t.throws(() => decode([Buffer.from(forward.replace('"tokens":{"$b":1', '"tokens":{"$b":0')), Buffer.alloc(4)]), { name: 'DecodeError' }, 'nor may it name the header')
  const ok = decode([Buffer.from(forward), Buffer.from(Int32Array.of(4, 5).buffer)]) as ForwardBatch
  t.same([...ok.prefill[0]!.tokens], [4, 5], 'with its frame, the same message decodes')
})
