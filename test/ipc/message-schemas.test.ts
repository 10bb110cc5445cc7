/** Every message kind survives the codec whole, and a malformed message of each kind is refused by name. */
import t from 'tap'
import { decode, encode } from '../../src/ipc/codec.ts'
import { MESSAGE_SCHEMAS, toJsonSchema } from '../../src/ipc/message-schemas.ts'
import type { MessageOf, MessageType } from '../../src/ipc/messages.ts'

const trace = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }
const sampling = { temperature: 0.7, topP: 0.9, topK: 40, seed: 3 }

/** A well-formed sample of each kind: a new kind without one fails the type check here too. */
const SAMPLES: { [T in MessageType]: MessageOf<T> } = {
  generate: {
    type: 'generate',
    rid: 'r1',
    trace,
    text: null,
    inputIds: null,
    messages: [{ role: 'user', content: 'hi' }],
    sampling,
    maxTokens: 8,
    ignoreEos: false,
    stop: ['\n'],
    arrivalMs: 12.5,
  },
  tokenized: { type: 'tokenized', rid: 'r1', trace, inputIds: Int32Array.of(1, 2), sampling, maxTokens: 8, ignoreEos: false, arrivalMs: 12.5 },
  abort: { type: 'abort', rid: 'r1', reason: 'client gone' },
  forward: {
    type: 'forward',
    step: 4,
    prefill: [{ rid: 'r1', trace, tokens: Int32Array.of(5), start: 0, last: true, sampling }],
    decode: ['r0'],
    decodeTokens: Int32Array.of(9),
    decodeSteps: 1,
    release: ['r9'],
  },
  forward_out: { type: 'forward_out', step: 4, tpRank: 0, allReduceMs: 0, rids: ['r1'], tokens: Int32Array.of(7), failed: [], prefillMs: 1.5, decodeMs: 2 },
  batch_token_ids: {
    type: 'batch_token_ids',
    rids: ['r1', 'r2'],
    tokens: Int32Array.of(7, 8),
    finished: [null, 'length'],
    promptTokens: Int32Array.of(2, 3),
    stats: [null, { queueMs: 1, prefillMs: 2, decodeMs: 3 }],
  },
  batch_str: { type: 'batch_str', items: [{ rid: 'r1', text: 'a', tokenId: 7, finishReason: 'stop', promptTokens: 2, completionTokens: 1, stats: null }] },
  req_error: { type: 'req_error', rid: 'r1', code: 'SPANSERVE_ERR_QUEUE_FULL', message: 'full', param: null },
  grammar_prepare: { type: 'grammar_prepare', rid: 'r1', constraint: { type: 'regex', pattern: 'a+', param: 'guided_regex' } },
  grammar_ready: { type: 'grammar_ready', rid: 'r1', code: 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX', message: 'guided_regex: too slow', param: 'guided_regex' },
  grammar_cancel: { type: 'grammar_cancel', rid: 'r1' },
  ready: { type: 'ready', role: 'worker', dpRank: 0, tpRank: 1, pid: 42, detail: { provider: 'cpu' } },
  fatal: { type: 'fatal', role: 'scheduler', dpRank: 0, tpRank: 0, pid: 42, code: 'SPANSERVE_ERR_MODEL_INVALID', message: 'no model' },
  process_stats: {
    type: 'process_stats',
    role: 'scheduler',
    dpRank: 0,
    tpRank: 0,
    pid: 42,
    rssBytes: 1,
    heapUsedBytes: 2,
    externalBytes: 3,
    liveRequests: 1,
    tracedRequests: 0,
    droppedSpans: 0,
    scheduler: { running: 1, waiting: 0, kvUsedTokens: 10, kvTotalTokens: 100, batchSizes: Int32Array.of(1, 1) },
    worker: null,
  },
  slice_marks: { type: 'slice_marks', role: 'worker', dpRank: 0, tpRank: 1, pid: 42, rids: ['r1'], slices: ['00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01'] },
  process_exited: { type: 'process_exited', key: 'worker-0-0', code: null, signal: 'SIGKILL' },
  restart_process: { type: 'restart_process', key: 'worker-0-0' },
  tokenize: {
    type: 'tokenize',
    rid: 't1',
    text: null,
    messages: [{ role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: { a: 1 } } }] }],
    tools: [{ type: 'function', function: { name: 'f', description: null, parameters: { type: 'object' } } }],
    tokens: null,
    addSpecialTokens: false,
    addGenerationPrompt: true,
    tokenStrs: true,
  },
  tokenize_out: { type: 'tokenize_out', rid: 't1', tokens: [1, 2], tokenStrs: ['a', 'b'], text: null },
  trace_setting: { type: 'trace_setting', level: 2, sampleRate: 0.5 },
  trace_verdict: { type: 'trace_verdict', keep: ['4bf92f3577b34da6a3ce929d0e0e4736'], drop: [] },
  trace_dump: { type: 'trace_dump', id: 3 },
  trace_dumped: { type: 'trace_dumped', role: 'worker', dpRank: 0, tpRank: 1, pid: 4242, id: 3, traces: 2, spans: 57 },
  group_state: { type: 'group_state', dpRank: 1, up: false, reason: 'worker died' },
  reset: { type: 'reset', reason: 'worker died' },
  kv_expect: { type: 'kv_expect', rid: 'r1', trace, room: 2 ** 52 + 7, blocks: Int32Array.of(4, 5, 6), from: 1, tokens: Int32Array.from({ length: 32 }, (_, i) => i) },
  kv_cancel: { type: 'kv_cancel', rid: 'r1' },
  kv_arrived: { type: 'kv_arrived', rid: 'r1', ok: false, reason: 'the prompt differs', cachedTokens: 16 },
  kv_transfer: { type: 'kv_transfer', room: 9, trace: null, tokens: Int32Array.of(1, 2), numLayers: 1, numKvHeads: 1, headDim: 2, data: Float32Array.of(0.5, -1, 2, 3), cachedTokens: 0 },
}

const kinds = Object.keys(SAMPLES) as MessageType[]

t.test('the codec knows exactly the kinds of Message', async (t) => {
  t.same(Object.keys(MESSAGE_SCHEMAS).sort(), [...kinds].sort())
})

/** A value of another JSON type than `v`'s. */
const wrongType = (v: unknown): unknown => (typeof v === 'boolean' ? 'no' : true)

for (const kind of kinds) {
  t.test(`${kind}: a well-formed message comes back equal; a malformed one is refused by kind and field`, async (t) => {
    const sample = SAMPLES[kind] as unknown as Record<string, unknown>
    t.same(decode(encode(SAMPLES[kind])), sample)

    const required = toJsonSchema(MESSAGE_SCHEMAS[kind]).required as string[]
    t.ok(required.length > 1, 'fields besides type are required')
    for (const field of required) {
      const { [field]: _dropped, ...missing } = sample
      t.throws(
        () => decode(encode(missing as never)),
        {
          name: 'DecodeError',
          message: field === 'type' ? 'codec: message without a type' : `codec: malformed ${kind} message: ${kind} must have required property '${field}'`,
        },
        `without ${field}`,
      )
      if (field === 'type') continue
      t.throws(
        () => decode(encode({ ...sample, [field]: wrongType(sample[field]) } as never)),
        {
          name: 'DecodeError',
          message: new RegExp(`^codec: malformed ${kind} message: ${kind}/${field} must `),
        },
        `${field} of the wrong type`,
      )
    }
  })
}

t.test('nested fields, enums, error codes and typed-array kinds are checked too', async (t) => {
  const refused = (msg: unknown, message: RegExp) => t.throws(() => decode(encode(msg as never)), { name: 'DecodeError', message })
  const fwd = SAMPLES.forward
  refused({ ...fwd, prefill: [{ ...fwd.prefill[0], rid: 5 }] }, /malformed forward message: forward\/prefill\/0\/rid must be string/)
  refused({ ...fwd, prefill: [{ ...fwd.prefill[0], tokens: Float32Array.of(5) }] }, /forward\/prefill\/0\/tokens must be a Int32Array frame/)
  refused({ ...fwd, decodeTokens: [9] }, /forward\/decodeTokens must be a Int32Array frame/)
  refused({ ...SAMPLES.req_error, code: 'E_NOPE' }, /malformed req_error message: req_error\/code must be equal to one of the allowed values/)
  refused({ ...SAMPLES.batch_token_ids, finished: ['done', null] }, /batch_token_ids\/finished\/0 must be equal to one of the allowed values/)
  refused({ ...SAMPLES.trace_setting, level: 4 }, /trace_setting\/level must be equal to one of the allowed values/)
  refused({ ...SAMPLES.generate, trace: { tracestate: 'a=b' } }, /generate\/trace must have required property 'traceparent'/)
  refused({ ...SAMPLES.generate, sampling: { ...sampling, seed: 'x' } }, /generate\/sampling\/seed must be number/)
  refused({ ...SAMPLES.generate, trace: { ...trace, links: [{ traceparent: trace.traceparent }] } }, /generate\/trace\/links\/0 must have required property 'reason'/)
  refused({ ...SAMPLES.tokenized, trace: { ...trace, links: [{ traceparent: trace.traceparent, reason: 'resumed_from', pid: 'x' }] } }, /tokenized\/trace\/links\/0\/pid must be integer/)
  refused({ type: 'no_such_kind' }, /^codec: unknown message type "no_such_kind"$/)
})

t.test('optional fields may be absent or present; nullable ones may be null', async (t) => {
  const resumed = { ...SAMPLES.generate, resumeIds: [1, 2], text: 'x', messages: null, tools: null }
  t.same(decode(encode(resumed)), resumed)
  // A resumed attempt's carrier links its thread spans to the dead process's last slice.
  const link = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01', reason: 'resumed_from', process: 'worker-0-0', pid: 42 }
  const linked = { ...resumed, trace: { ...trace, prev: trace.traceparent, links: [link, { traceparent: link.traceparent, reason: 'resumed_from' }] } }
  t.same(decode(encode(linked)), linked)
  t.same(decode(encode({ ...SAMPLES.req_error, lost: 'worker-0-0' })), { ...SAMPLES.req_error, lost: 'worker-0-0' })
  t.throws(() => decode(encode({ ...SAMPLES.req_error, lost: 3 } as never)), { name: 'DecodeError', message: /req_error\/lost must be string/ })
})
