import t from 'tap'
import { decode, encode } from '../../src/ipc/codec.ts'
import type { BatchStrOutput, BatchTokenIdOutput, ForwardBatch } from '../../src/ipc/messages.ts'

t.test("typed arrays travel as binary, in the message's one frame, and come back equal", async (t) => {
  const msg: ForwardBatch = {
    type: 'forward',
    step: 7,
    prefill: [
      {
        rid: 'a',
        trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
        tokens: Int32Array.of(1, 2, 3, -4),
        start: 0,
        last: true,
        sampling: { temperature: 0, topP: 1, topK: 0, seed: 5 },
      },
    ],
    decode: ['b', 'c'],
    decodeTokens: Int32Array.of(11, 12),
    decodeSteps: 1,
    release: ['d'],
  }
  const frames = encode(msg)
  t.equal(frames.length, 1, 'one frame')
  t.equal(frames[0]![0], 0, 'in the binary layout')
  t.notMatch(frames[0]!.toString(), /"0":1/, 'the token ids are not in the JSON header')
  const back = decode(frames) as ForwardBatch
  t.same(back.decode, ['b', 'c'])
  t.same([...back.decodeTokens], [11, 12])
  t.ok(back.prefill[0]!.tokens instanceof Int32Array)
  t.same([...back.prefill[0]!.tokens], [1, 2, 3, -4])
  t.same(back.prefill[0]!.trace, msg.prefill[0]!.trace, 'the trace carrier survives the hop')
})

t.test('subarrays at an offset encode only their own elements', async (t) => {
  const all = Int32Array.of(9, 8, 7, 6, 5)
  const out: BatchTokenIdOutput = {
    type: 'batch_token_ids',
    rids: ['x', 'y'],
    tokens: all.subarray(1, 3),
    finished: [null, 'stop'],
    promptTokens: Int32Array.of(3, 4),
    stats: [null, { queueMs: 1, prefillMs: 2, decodeMs: 3 }],
  }
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

t.test('the message given to encode is left as it was', async (t) => {
  const tokens = Int32Array.of(1, 2)
  const msg: ForwardBatch = {
    type: 'forward',
    step: 1,
    prefill: [{ rid: 'a', trace: null, tokens, start: 0, last: true, sampling: null }],
    decode: [],
    decodeTokens: new Int32Array(0),
    decodeSteps: 1,
    release: [],
  }
  const frames = encode(msg)
  t.equal(msg.prefill[0]!.tokens, tokens, "the caller's message still holds its typed array")
  t.same([...(decode(frames) as ForwardBatch).prefill[0]!.tokens], [1, 2])
})

t.test("logprobs' top lists travel in the binary frame, not as JSON numbers", async (t) => {
  const logprobs = { token: ' hi', logprob: Math.fround(-0.5), top: [' hi', '__proto__', 'constructor'], topLogprobs: Float32Array.of(-0.5, -2.25, -3) }
  const msg: BatchStrOutput = {
    type: 'batch_str',
    items: [
      { rid: 'a', text: ' hi', tokenId: 5, finishReason: null, promptTokens: 3, completionTokens: 1, stats: null, logprobs },
      { rid: 'b', text: '!', tokenId: 6, finishReason: 'stop', promptTokens: 3, completionTokens: 2, stats: { queueMs: 1, prefillMs: 2, decodeMs: 3 } },
    ],
  }
  const frames = encode(msg)
  t.equal(frames.length, 1)
  t.notMatch(frames[0]!.toString(), /-2\.25/, 'no logprob among the JSON')
  t.ok(msg.items[0]!.logprobs!.topLogprobs instanceof Float32Array, "the caller's message still holds its typed array")
  const back = decode(frames) as BatchStrOutput
  t.same(back.items[1], msg.items[1])
  const lp = back.items[0]!.logprobs!
  t.same(lp.top, logprobs.top)
  t.ok(lp.topLogprobs instanceof Float32Array)
  t.same([...lp.topLogprobs], [-0.5, -2.25, -3])
  t.equal(lp.logprob, -0.5)
})

t.test('a message with no typed array is JSON alone; a reference with no binary behind it is refused', async (t) => {
  const msg: BatchStrOutput = {
    type: 'batch_str',
    items: [{ rid: 'a', text: ' hi', tokenId: 5, finishReason: null, promptTokens: 3, completionTokens: 1, stats: null }],
  }
  const frames = encode(msg)
  t.equal(frames.length, 1)
  t.same(decode(frames), msg, 'comes back equal')
  t.equal(encode({ type: 'abort', rid: 'a', reason: 'client gone' }).length, 1, 'a kind that never holds one')
  // A forward whose token ids are a binary reference: as JSON alone, then in the binary layout.
  const forward =
    '{"type":"forward","step":1,"prefill":[{"rid":"a","trace":null,"tokens":{"$b":0,"n":2,"t":"i32"},"start":0,"last":true,"sampling":null}],"decode":[],"decodeTokens":{"$b":8,"n":0,"t":"i32"},"decodeSteps":1,"release":[]}'
  const binary = Buffer.from(Int32Array.of(4, 5).buffer)
  /** The binary layout by hand: 0, the header's length, the header, padding to 4 bytes, the arrays. */
  const layout = (header: string, bytes: Buffer, length = Buffer.byteLength(header)) => {
    const at = (5 + Buffer.byteLength(header) + 3) & ~3
    const frame = Buffer.alloc(at + bytes.length)
    frame.writeUInt32LE(length, 1)
    frame.write(header, 5)
    bytes.copy(frame, at)
    return frame
  }
  t.throws(() => decode([Buffer.from(forward)]), { name: 'DecodeError' }, 'JSON alone: the reference is no typed array, and the schema says so')
  const bad = (ref: string) => decode([layout(forward.replace('{"$b":0,"n":2,"t":"i32"}', ref), binary)])
  t.throws(() => bad('{"$b":0,"n":3,"t":"i32"}'), { name: 'DecodeError' }, 'a reference past the end of the binary part')
  t.throws(() => bad('{"$b":2,"n":1,"t":"i32"}'), { name: 'DecodeError' }, 'one not aligned to its kind')
  t.throws(() => bad('{"$b":-4,"n":1,"t":"i32"}'), { name: 'DecodeError' }, 'a negative offset')
  t.throws(() => bad('{"$b":0,"n":1.5,"t":"i32"}'), { name: 'DecodeError' }, 'a length that is no integer')
  t.throws(() => bad('{"$b":0,"n":2,"t":"f64"}'), { name: 'DecodeError' }, 'a kind the codec does not know')
  t.throws(() => bad('{"$b":0,"n":2,"t":"constructor"}'), { name: 'DecodeError' }, 'nor one inherited from Object')
  t.throws(() => decode([layout(forward, binary, 100_000)]), { name: 'DecodeError' }, 'a header length past the frame')
  t.throws(() => decode([layout(forward, binary, 0xfffffff0)]), { name: 'DecodeError' }, 'one past 2^31, where 32-bit alignment would wrap')
  t.throws(() => decode([Buffer.from([0, 1])]), { name: 'DecodeError' }, 'a frame too short for the length')
  t.throws(() => decode([layout(forward, binary), binary]), { name: 'DecodeError' }, 'more than one frame')
  const ok = decode([layout(forward, binary)]) as ForwardBatch
  t.same([...ok.prefill[0]!.tokens], [4, 5], 'with its frame, the same message decodes')
})
