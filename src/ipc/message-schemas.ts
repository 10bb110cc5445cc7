/**
 * The shape of every message kind, checked by the codec on decode (JSON Schema, compiled by Ajv).
 * The table is typed from src/ipc/messages.ts: a message kind without an entry, a field without its
 * schema (or one too many), an optional field not marked `opt`, a nullable one not marked `orNull`,
 * or a schema of the wrong JSON type fails the type check. (Ajv's own JSONSchemaType cannot spell a
 * required field that may be null, which most messages have, nor a typed array.)
 */
import { ERRORS, type ErrorCode } from '../errors.ts'
import type {
  Bootstrap,
  KvTransferTarget,
  ChatMessage,
  ChatTool,
  FinishReason,
  MessageOf,
  MessageType,
  ProcessStats,
  RequestStats,
  Role,
  SamplingParams,
  PromptTextLogprobs,
  TextLogprobs,
  TokenLogprobs,
} from './messages.ts'
import type { CarrierLink, TraceCarrier } from '../tracing/propagation.ts'
import { TRACE_LEVELS } from '../tracing/types.ts'
import type { OutputConstraint } from '../structured-output/constraint.ts'

/** The typed arrays the codec sends as binary frames, by the kind named in their frame reference. */
export const BINARY_KINDS = { i32: Int32Array, f32: Float32Array, u8: Uint8Array } as const
export type BinaryKind = keyof typeof BINARY_KINDS

/** A typed array of this kind: the `typedArray` keyword that the codec adds to Ajv. */
interface BinarySchema<K extends BinaryKind> {
  typedArray: K
}

/** The schema of a value of type T (neither null nor undefined); `unknown` takes any JSON value. */
export type Schema<T> = unknown extends T
  ? Record<string, never>
  : [T] extends [Int32Array]
    ? BinarySchema<'i32'>
    : [T] extends [Float32Array]
      ? BinarySchema<'f32'>
      : [T] extends [Uint8Array]
        ? BinarySchema<'u8'>
        : [T] extends [string]
          ? { type: 'string'; enum?: readonly T[]; const?: T }
          : [T] extends [number]
            ? { type: 'number' | 'integer'; enum?: readonly T[]; const?: T }
            : [T] extends [boolean]
              ? { type: 'boolean' }
              : [T] extends [readonly (infer U)[]]
                ? { type: 'array'; items: Field<U> }
                : [T] extends [object]
                  ? ObjectSchema<T>
                  : never

/** An array item or a property's value: a `T | null` is marked by `orNull`. */
type Field<T> = unknown extends T ? Record<string, never> : null extends T ? Schema<NonNullable<T>> & { nullable: true } : Schema<T> & { nullable?: never }

/** A property: an optional one (`?:`) is marked by `opt`; the others are required. */
type Prop<T> = unknown extends T ? Field<T> : undefined extends T ? Field<Exclude<T, undefined>> & { optional: true } : Field<T> & { optional?: never }

interface ObjectSchema<T> {
  type: 'object'
  properties: { [K in keyof T]-?: Prop<T[K]> }
}

export type MessageSchema<T extends MessageType> = ObjectSchema<MessageOf<T>>

function binary<K extends BinaryKind>(kind: K): BinarySchema<K> {
  return { typedArray: kind }
}

/** May be null (Ajv's `nullable`, with null added to an enum as Ajv wants). */
function orNull<S extends object>(schema: S): S & { nullable: true } {
  const e = (schema as { enum?: readonly unknown[] }).enum
  return { ...schema, nullable: true, ...(e ? { enum: [...e, null] } : {}) }
}

/** An optional field: left out of `required` (see toJsonSchema). */
function opt<S extends object>(schema: S): S & { optional: true } {
  return { ...schema, optional: true }
}

/** Plain JSON Schema for Ajv: each object's `required` lists its properties not marked `opt`. */
export function toJsonSchema(schema: object): Record<string, unknown> {
  const { optional: _optional, ...s } = schema as Record<string, unknown>
  if (s.type === 'array') return { ...s, items: toJsonSchema(s.items as object) }
  if (s.type !== 'object') return s
  const props = s.properties as Record<string, { optional?: true }>
  const properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, toJsonSchema(v)]))
  return { ...s, properties, required: Object.keys(props).filter((k) => props[k]!.optional !== true) }
}

const str = { type: 'string' } as const
const int = { type: 'integer' } as const
const num = { type: 'number' } as const
const bool = { type: 'boolean' } as const
/** Any JSON value (a field typed `unknown`). */
const anyValue: Record<string, never> = {}
const strings = { type: 'array', items: str } as const
const ints = { type: 'array', items: int } as const
const i32 = binary('i32')
const f32 = binary('f32')

const bootstrap: Schema<Bootstrap> = { type: 'object', properties: { room: int, host: orNull(str), port: orNull(int) } }

const transferTarget: Schema<KvTransferTarget> = { type: 'object', properties: { room: int, host: str, port: int, tokens: i32, cachedTokens: int } }

const role: Schema<Role> = { type: 'string', enum: ['server', 'tokenizer', 'scheduler', 'worker'] }
const errorCode: Schema<ErrorCode> = { type: 'string', enum: Object.keys(ERRORS) as ErrorCode[] }
const finishReason: Schema<FinishReason> = { type: 'string', enum: ['stop', 'length', 'abort', 'error'] }

const carrierLink: Schema<CarrierLink> = {
  type: 'object',
  properties: { traceparent: str, reason: str, process: opt(str), pid: opt(int) },
}

const trace: Schema<TraceCarrier> = {
  type: 'object',
  properties: { traceparent: str, tracestate: opt(str), prev: opt(str), links: opt({ type: 'array', items: carrierLink }) },
}

/** A union by `type`, which Schema cannot spell: the kind is checked here, its fields by src/structured-output/ and src/server/http/structured-output/. */
const outputConstraint = {
  type: 'object',
  properties: { type: { type: 'string', enum: ['json_schema', 'json_object', 'regex', 'choice', 'grammar', 'structural_tag', 'tool_calls'] } },
} as unknown as Schema<OutputConstraint>

const sampling: Schema<SamplingParams> = {
  type: 'object',
  properties: {
    temperature: num,
    topP: num,
    topK: num,
    seed: orNull(num),
    draws: opt(int),
    presencePenalty: opt(num),
    frequencyPenalty: opt(num),
    repetitionPenalty: opt(num),
    minP: opt(num),
    minTokens: opt(int),
    stopTokenIds: opt(ints),
    logitBias: opt({ type: 'array', items: { type: 'array', items: num } }),
    promptIds: opt(ints),
    generatedIds: opt(ints),
    minTokensStopIds: opt(ints),
    constraint: opt(outputConstraint),
    logprobs: opt(int),
    promptLogprobs: opt(int),
  },
}

const nums = { type: 'array', items: num } as const

const tokenLogprobs: Schema<TokenLogprobs> = {
  type: 'object',
  properties: {
    logprob: num,
    topIds: i32,
    topLogprobs: f32,
    prompt: opt({
      type: 'object',
      properties: { logprobs: { type: 'array', items: orNull(num) }, topIds: { type: 'array', items: ints }, topLogprobs: { type: 'array', items: nums } },
    }),
  },
}

const promptTextLogprobs: Schema<PromptTextLogprobs> = { type: 'object', properties: { token: str, logprob: orNull(num), top: strings, topLogprobs: nums } }

const textLogprobs: Schema<TextLogprobs> = {
  type: 'object',
  properties: {
    token: str,
    logprob: num,
    top: strings,
    topLogprobs: f32,
    prompt: opt({ type: 'array', items: promptTextLogprobs }),
  },
}

const requestStats: Schema<RequestStats> = {
  type: 'object',
  properties: { queueMs: num, prefillMs: num, decodeMs: num },
}

const chatMessage: Schema<ChatMessage> = {
  type: 'object',
  properties: {
    role: str,
    content: str,
    name: opt(str),
    tool_calls: opt({
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: str,
          type: { type: 'string', const: 'function' },
          function: { type: 'object', properties: { name: str, arguments: anyValue } },
        },
      },
    }),
    tool_call_id: opt(str),
  },
}

const chatTool: Schema<ChatTool> = {
  type: 'object',
  properties: {
    type: { type: 'string', const: 'function' },
    function: {
      type: 'object',
      properties: { name: str, description: opt(orNull(str)), parameters: opt(orNull({ type: 'object', properties: {} })) },
    },
  },
}

type SchedulerStats = NonNullable<ProcessStats['scheduler']>
const schedulerStats: Schema<SchedulerStats> = {
  type: 'object',
  properties: {
    running: int,
    waiting: int,
    kvUsedTokens: int,
    kvTotalTokens: int,
    batchSizes: i32,
    cacheTokens: opt(int),
    cacheQueryTokens: opt(int),
    cacheHitTokens: opt(int),
    limitedSteps: opt(int),
  },
}
const workerStats: Schema<NonNullable<ProcessStats['worker']>> = {
  type: 'object',
  properties: { cachedTokens: int, sequences: int, cacheBlocks: opt(int), grammarThreads: opt(int), grammarMemoryBytes: opt(num) },
}

/** Who sent a process report. */
const sender = { role, dpRank: int, tpRank: int, pid: int }

/** One entry per message kind: adding a kind to Message without its entry fails the type check. */
export const MESSAGE_SCHEMAS = {
  generate: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'generate' },
      rid: str,
      trace: orNull(trace),
      text: orNull(str),
      inputIds: orNull(ints),
      messages: orNull({ type: 'array', items: chatMessage }),
      tools: opt(orNull({ type: 'array', items: chatTool })),
      sampling,
      maxTokens: int,
      ignoreEos: bool,
      stop: strings,
      arrivalMs: num,
      resumeIds: opt(ints),
      client: opt(str),
      skipSpecialTokens: opt(bool),
      bootstrap: opt(bootstrap),
    },
  },
  tokenized: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'tokenized' },
      rid: str,
      trace: orNull(trace),
      inputIds: i32,
      sampling,
      maxTokens: int,
      ignoreEos: bool,
      arrivalMs: num,
      client: opt(str),
      bootstrap: opt(bootstrap),
    },
  },
  abort: {
    type: 'object',
    properties: { type: { type: 'string', const: 'abort' }, rid: str, reason: str },
  },
  forward: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'forward' },
      step: int,
      prefill: {
        type: 'array',
        items: {
          type: 'object',
          properties: { rid: str, trace: orNull(trace), tokens: i32, start: int, last: bool, sampling: orNull(sampling), blocks: opt(i32), transfer: opt(transferTarget) },
        },
      },
      decode: strings,
      decodeTokens: i32,
      decodeSteps: int,
      release: strings,
      freeBlocks: opt(i32),
    },
  },
  forward_out: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'forward_out' },
      step: int,
      tpRank: int,
      allReduceMs: num,
      rids: strings,
      tokens: i32,
      failed: strings,
      prefillMs: num,
      decodeMs: num,
      logprobs: opt({ type: 'array', items: orNull(tokenLogprobs) }),
    },
  },
  batch_token_ids: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'batch_token_ids' },
      rids: strings,
      tokens: i32,
      finished: { type: 'array', items: orNull(finishReason) },
      promptTokens: i32,
      stats: { type: 'array', items: orNull(requestStats) },
      cachedTokens: opt(i32),
      logprobs: opt({ type: 'array', items: orNull(tokenLogprobs) }),
    },
  },
  batch_str: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'batch_str' },
      items: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            rid: str,
            text: str,
            tokenId: int,
            finishReason: orNull(finishReason),
            promptTokens: int,
            completionTokens: int,
            stats: orNull(requestStats),
            cachedTokens: opt(int),
            logprobs: opt(textLogprobs),
          },
        },
      },
    },
  },
  req_error: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'req_error' },
      rid: str,
      code: errorCode,
      message: str,
      param: orNull(str),
      lost: opt(str),
    },
  },
  grammar_prepare: {
    type: 'object',
    properties: { type: { type: 'string', const: 'grammar_prepare' }, rid: str, constraint: outputConstraint },
  },
  grammar_ready: {
    type: 'object',
    properties: { type: { type: 'string', const: 'grammar_ready' }, rid: str, code: orNull(errorCode), message: orNull(str), param: orNull(str) },
  },
  grammar_cancel: {
    type: 'object',
    properties: { type: { type: 'string', const: 'grammar_cancel' }, rid: str },
  },
  ready: {
    type: 'object',
    properties: { type: { type: 'string', const: 'ready' }, ...sender, detail: { type: 'object', properties: {} } },
  },
  fatal: {
    type: 'object',
    properties: { type: { type: 'string', const: 'fatal' }, ...sender, code: errorCode, message: str },
  },
  process_stats: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'process_stats' },
      ...sender,
      rssBytes: num,
      heapUsedBytes: num,
      externalBytes: num,
      liveRequests: int,
      tracedRequests: int,
      droppedSpans: int,
      flightRecorder: opt({ type: 'object', properties: { spans: int, bytes: int, dropped: int } }),
      scheduler: orNull(schedulerStats),
      worker: orNull(workerStats),
    },
  },
  slice_marks: {
    type: 'object',
    properties: { type: { type: 'string', const: 'slice_marks' }, ...sender, rids: strings, slices: strings },
  },
  tokenize: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'tokenize' },
      rid: str,
      text: orNull(str),
      messages: orNull({ type: 'array', items: chatMessage }),
      tools: orNull({ type: 'array', items: chatTool }),
      tokens: orNull(ints),
      addSpecialTokens: bool,
      addGenerationPrompt: bool,
      tokenStrs: bool,
    },
  },
  tokenize_out: {
    type: 'object',
    properties: { type: { type: 'string', const: 'tokenize_out' }, rid: str, tokens: ints, tokenStrs: orNull(strings), text: orNull(str) },
  },
  process_exited: {
    type: 'object',
    properties: { type: { type: 'string', const: 'process_exited' }, key: str, code: orNull(int), signal: orNull(str) },
  },
  restart_process: {
    type: 'object',
    properties: { type: { type: 'string', const: 'restart_process' }, key: str },
  },
  trace_setting: {
    type: 'object',
    properties: { type: { type: 'string', const: 'trace_setting' }, level: { type: 'integer', enum: TRACE_LEVELS }, sampleRate: num },
  },
  trace_verdict: {
    type: 'object',
    properties: { type: { type: 'string', const: 'trace_verdict' }, keep: strings, drop: strings },
  },
  trace_dump: {
    type: 'object',
    properties: { type: { type: 'string', const: 'trace_dump' }, id: int },
  },
  trace_dumped: {
    type: 'object',
    properties: { type: { type: 'string', const: 'trace_dumped' }, ...sender, id: int, traces: int, spans: int },
  },
  group_state: {
    type: 'object',
    properties: { type: { type: 'string', const: 'group_state' }, dpRank: int, up: bool, reason: str, process: opt(str) },
  },
  reset: {
    type: 'object',
    properties: { type: { type: 'string', const: 'reset' }, reason: str },
  },
  kv_expect: {
    type: 'object',
    properties: { type: { type: 'string', const: 'kv_expect' }, rid: str, trace: orNull(trace), room: int, blocks: i32, from: int, tokens: i32 },
  },
  kv_cancel: {
    type: 'object',
    properties: { type: { type: 'string', const: 'kv_cancel' }, rid: str },
  },
  kv_arrived: {
    type: 'object',
    properties: { type: { type: 'string', const: 'kv_arrived' }, rid: str, ok: bool, reason: orNull(str), cachedTokens: int },
  },
  kv_transfer: {
    type: 'object',
    properties: {
      type: { type: 'string', const: 'kv_transfer' },
      room: int,
      trace: orNull(trace),
      tokens: i32,
      numLayers: int,
      numKvHeads: int,
      headDim: int,
      data: f32,
      cachedTokens: int,
    },
  },
} satisfies { [T in MessageType]: MessageSchema<T> }
