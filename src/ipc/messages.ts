/**
 * The one contract for everything that crosses a process boundary. Names follow the stage they
 * belong to (SGLang's io_struct): GenerateReqInput (server → tokenizer) → TokenizedGenerateReqInput
 * (tokenizer → scheduler) → ForwardBatch / ForwardBatchOutput (scheduler ↔ worker) →
 * BatchTokenIdOutput (scheduler → tokenizer) → BatchStrOutput (tokenizer → server).
 * Every per-request message carries `trace`, the request's trace context (null when untraced).
 * Encoding: src/ipc/codec.ts (a JSON header, typed arrays in binary frames).
 */
import type { ErrorCode } from '../errors.ts'
import type { Role, TraceCarrier, TraceLevel } from '../tracing/types.ts'
import type { SamplingParams } from '../sampling/params.ts'
import type { OutputConstraint } from '../structured-output/constraint.ts'

export type { Role } from '../tracing/types.ts'
export type FinishReason = 'stop' | 'length' | 'abort' | 'error'

/** Owned by the sampling module, which maps request bodies onto it (src/sampling/). */
export type { SamplingParams } from '../sampling/params.ts'

/**
 * Log-probabilities of one sampled token, from the model's raw output (before temperature, penalties,
 * logit bias and grammar masks, as vLLM's default): worker → scheduler → tokenizer, as token ids.
 * Only a request that asks for logprobs (SamplingParams.logprobs) has them. The top lists are typed
 * arrays, so they travel as binary (codec.ts): top_logprobs 20 is 21 numbers a token, and each process
 * would otherwise format and parse them as JSON.
 */
export interface TokenLogprobs {
  /** Float32-exact, as topLogprobs: the sampled token's value equals its own entry there. */
  logprob: number
  /** The most likely tokens, best first: SamplingParams.logprobs of them (ties by lower id). */
  topIds: Int32Array
  topLogprobs: Float32Array
  /** On a request's first sampled token, when it asked for prompt logprobs (echo): its prompt's. */
  prompt?: PromptLogprobs
}

/** Each prompt token's log-probability given the tokens before it; the first has none (null). */
export interface PromptLogprobs {
  logprobs: (number | null)[]
  topIds: number[][]
  topLogprobs: number[][]
}

/** One output token's logprobs with text (tokenizer → server): the ids decoded, the numbers as they came. */
export interface TextLogprobs {
  token: string
  logprob: number
  /** The top tokens' texts, best first, and their logprobs. */
  top: string[]
  topLogprobs: Float32Array
  /** With the first output, when prompt logprobs were asked: one per prompt token (the first's logprob null). */
  prompt?: PromptTextLogprobs[]
}

export interface PromptTextLogprobs {
  token: string
  logprob: number | null
  top: string[]
  topLogprobs: number[]
}

/** A chat message as Hugging Face chat templates read it. */
export interface ChatMessage {
  role: string
  content: string
  name?: string
  /** An assistant's calls, arguments parsed to an object where they are JSON (what templates expect). */
  tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: unknown } }[]
  tool_call_id?: string
}

/** A tool as the chat template receives it (OpenAI's `tools` entry). */
export interface ChatTool {
  type: 'function'
  function: { name: string; description?: string | null; parameters?: Record<string, unknown> | null }
}

/**
 * Prefill/decode disaggregation (SGLang's bootstrap fields, set by the router): the request's room,
 * which pairs its prefill instance with its decode instance, and on a prefill instance the decode
 * instance's KV address. Decode instances get the room alone (host and port null).
 */
export interface Bootstrap {
  room: number
  host: string | null
  port: number | null
}

/** server → tokenizer: one API request. */
export interface GenerateReqInput {
  type: 'generate'
  rid: string
  trace: TraceCarrier | null
  /** Text prompt, token-id prompt, or chat messages (exactly one is set). */
  text: string | null
  inputIds: number[] | null
  messages: ChatMessage[] | null
  /** Tools the chat template shows the model (absent or null: none). */
  tools?: ChatTool[] | null
  sampling: SamplingParams
  maxTokens: number
  /** Keep generating past EOS until max_tokens (vLLM's ignore_eos, for benchmarks). */
  ignoreEos: boolean
  stop: string[]
  arrivalMs: number
  /**
   * A resumed request (its process died): the tokens it had generated, which continue its prompt
   * and count toward max_tokens and usage. Absent for a new request.
   */
  resumeIds?: number[]
  /** Who sent it, for fair scheduling (src/http/client-id.ts; never an API key itself). Absent: one anonymous client. */
  client?: string
  /**
   * vLLM's skip_special_tokens: false keeps special tokens in the text (a tool-call parser that reads
   * them asks for it, as vLLM's mistral parser does for `[TOOL_CALLS]`). Absent: true.
   */
  skipSpecialTokens?: boolean
  /** A disaggregated request's room (and on a prefill instance, where its KV goes). Absent: co-located. */
  bootstrap?: Bootstrap
}

/** tokenizer → scheduler: a request ready to run. */
export interface TokenizedGenerateReqInput {
  type: 'tokenized'
  rid: string
  trace: TraceCarrier | null
  inputIds: Int32Array
  sampling: SamplingParams
  maxTokens: number
  ignoreEos: boolean
  arrivalMs: number
  /** GenerateReqInput.client, passed on: the scheduler shares slots between clients (src/scheduler/fairness.ts). */
  client?: string
  /** GenerateReqInput.bootstrap, passed on (absent for a resumed request on a decode instance: it prefills itself). */
  bootstrap?: Bootstrap
}

/** Any process → the next one down: stop this request and free what it holds. */
export interface AbortReq {
  type: 'abort'
  rid: string
  reason: string
}

/** One prompt chunk to prefill in a step. */
export interface PrefillEntry {
  rid: string
  trace: TraceCarrier | null
  /** Tokens of this chunk; the sequence's earlier tokens are already in the worker's KV cache. */
  tokens: Int32Array
  /** Position of the chunk's first token. */
  start: number
  /** Last chunk: the worker samples the first generated token. */
  last: boolean
  /** Sent with the first chunk only. */
  sampling: SamplingParams | null
  /**
   * With the first chunk: the sequence's KV block table (src/ipc/kv-blocks.ts), enough blocks for
   * every position it will write. The first `start` positions are already in its first blocks (a
   * cached prefix). Absent: the worker gives the sequence blocks of its own.
   */
  blocks?: Int32Array
  /** Last chunk on a prefill instance: send the prompt's whole KV blocks to this decode instance's room. */
  transfer?: KvTransferTarget
}

/** Where a prefill instance's worker sends a prompt's KV, and what it sends (PrefillEntry.transfer). */
export interface KvTransferTarget {
  room: number
  host: string
  port: number
  /** The prompt's tokens in the whole blocks to send: all but the last token, down to a block boundary. */
  tokens: Int32Array
  /** Prompt tokens this instance found in its prefix cache. */
  cachedTokens: number
}

/** scheduler → worker: one step. Decode entries are rids whose last token the worker already holds. */
export interface ForwardBatch {
  type: 'forward'
  step: number
  prefill: PrefillEntry[]
  decode: string[]
  /**
   * The input token of each decode entry: the token sampled last step. Only TP rank 0 samples, so
   * the other ranks learn it here. Empty under the overlap schedule (TP size 1), where the scheduler
   * does not know it yet: each sequence takes the worker's own last sampled token.
   */
  decodeTokens: Int32Array
  /**
   * Decode steps to run back to back (--num-continuous-decode-steps), every decode entry in each,
   * each sequence fed its own last sampled token (decodeTokens, when given, are the first step's).
   */
  decodeSteps: number
  /** Sequences to drop from the KV cache before this step. */
  release: string[]
  /** KV blocks nothing refers to any more, freed after `release` and before the step (absent: none). */
  freeBlocks?: Int32Array
}

/** worker → scheduler: the sampled token of every sequence that produced one in this step. */
export interface ForwardBatchOutput {
  type: 'forward_out'
  step: number
  /** Every TP rank answers; rank 0's tokens are the step's output. */
  tpRank: number
  /** Time this rank spent in all-reduce during the step (0 without TP). */
  allReduceMs: number
  /**
   * One entry per sampled token, in the order sampled: a finished prompt's first token, then each
   * decode step's tokens (a rid appears once per step of the batch's decodeSteps).
   */
  rids: string[]
  tokens: Int32Array
  /** Sequences the worker could not run (unknown to its cache): the scheduler fails them. */
  failed: string[]
  /** Milliseconds spent in the prefill and decode session runs of this step. */
  prefillMs: number
  decodeMs: number
  /** Per entry of `rids`: its token's logprobs, null for a request that did not ask (absent: none asked). */
  logprobs?: (TokenLogprobs | null)[]
}

/** scheduler → tokenizer: new tokens of many requests at once. */
export interface BatchTokenIdOutput {
  type: 'batch_token_ids'
  /** In the order generated; a rid appears once per new token (several times after continuous decode steps). */
  rids: string[]
  /** One new token per entry. */
  tokens: Int32Array
  /** Finish reason per rid, null while running. */
  finished: (FinishReason | null)[]
  /** Prompt length per rid, for usage. */
  promptTokens: Int32Array
  /** Per rid: timings once finished, else null. */
  stats: (RequestStats | null)[]
  /** Per rid: prompt tokens whose KV came from the prefix cache (absent: none). */
  cachedTokens?: Int32Array
  /** Per rid: the token's logprobs from the worker, null when not asked (absent: none asked). */
  logprobs?: (TokenLogprobs | null)[]
}

/** Where a finished request's time went, as the scheduler saw it (for latency attributes). */
export interface RequestStats {
  queueMs: number
  prefillMs: number
  decodeMs: number
}

/** One request's share of a BatchStrOutput. */
export interface StrOutput {
  rid: string
  /** New text since the last output: never a cut UTF-8 character, but the last output's ends in U+FFFD when the generation ended inside one. */
  text: string
  /** The token this output is for: the server keeps them to resume the request after a crash. */
  tokenId: number
  finishReason: FinishReason | null
  promptTokens: number
  completionTokens: number
  /** Set when the request finished in the scheduler. */
  stats: RequestStats | null
  /** Prompt tokens whose KV came from the prefix cache (absent: the cache is off). */
  cachedTokens?: number
  /** The token's logprobs, when the request asked (absent otherwise). */
  logprobs?: TextLogprobs
}

/** tokenizer → server. */
export interface BatchStrOutput {
  type: 'batch_str'
  items: StrOutput[]
}

/** Any process → server: a request failed with a typed error (src/errors.ts code). */
export interface ReqError {
  type: 'req_error'
  rid: string
  code: ErrorCode
  message: string
  param: string | null
  /** Set when the request was lost with a dead process (its key, e.g. worker-0-0): the server resumes it. */
  lost?: string
}

/**
 * scheduler → worker (TP rank 0): compile a constrained request's grammar now, off the step loop,
 * while the request waits out of the batch (vLLM's WAITING_FOR_FSM).
 */
export interface GrammarPrepare {
  type: 'grammar_prepare'
  rid: string
  constraint: OutputConstraint
}

/** worker → scheduler: the grammar is ready (no code), or refused (a 400 to pass on to the client). */
export interface GrammarReady {
  type: 'grammar_ready'
  rid: string
  code: ErrorCode | null
  message: string | null
  param: string | null
}

/** scheduler → worker: a request whose grammar was prepared left before it ran: let its grammar go. */
export interface GrammarCancel {
  type: 'grammar_cancel'
  rid: string
}

/**
 * scheduler → worker (decode instance): a request waits for its prompt's KV from a prefill instance
 * (src/worker/kv-receiver.ts). When the room's transfer arrives, its blocks from `from` on are written
 * into `blocks` (the request's table from that index), and the worker answers kv_arrived.
 */
export interface KvExpect {
  type: 'kv_expect'
  rid: string
  trace: TraceCarrier | null
  room: number
  /** The request's block table. */
  blocks: Int32Array
  /** First block to write: the ones before are the decode instance's own cached prefix. */
  from: number
  /** The prompt's tokens in the whole blocks expected: the transfer must carry the same ones. */
  tokens: Int32Array
}

/** scheduler → worker: stop waiting for a request's KV (it timed out, was aborted, or was dropped). */
export interface KvCancel {
  type: 'kv_cancel'
  rid: string
}

/** worker → scheduler: a request's KV arrived and is in its blocks (ok), or came unusable (ok false: it prefills here). */
export interface KvArrived {
  type: 'kv_arrived'
  rid: string
  ok: boolean
  /** Why it was refused (ok false), else null. */
  reason: string | null
  /** Prompt tokens the prefill instance found in its prefix cache (usage's cached_tokens). */
  cachedTokens: number
}

/**
 * prefill instance's worker → decode instance's worker, over tcp (CURVE with --ipc-secret): a
 * request's prompt KV, its whole blocks (src/ipc/kv-blocks.ts) in order, each laid out as the
 * worker's KvBlockStore holds it, [layer*2 + (0 key | 1 value)][kv heads][KV_BLOCK_TOKENS][head dim].
 */
export interface KvTransfer {
  type: 'kv_transfer'
  room: number
  /** The prefill worker's context, its prev the prefill_transfer_kv_cache slice (the decode side links to it). */
  trace: TraceCarrier | null
  /** The prompt's tokens in those blocks. */
  tokens: Int32Array
  numLayers: number
  numKvHeads: number
  headDim: number
  data: Float32Array
  cachedTokens: number
}

/** Child → launcher: up and serving. */
export interface ProcessReady {
  type: 'ready'
  role: Role
  dpRank: number
  tpRank: number
  pid: number
  detail: Record<string, unknown>
}

/** Child → launcher: cannot go on; the launcher reports it and, at start-up, stops. */
export interface ProcessFatal {
  type: 'fatal'
  role: Role
  dpRank: number
  tpRank: number
  pid: number
  code: ErrorCode
  message: string
}

/**
 * Child → server, every --stats-interval: the process's gauges and what it observed since the last
 * report, so /metrics covers every process, not only the server.
 */
export interface ProcessStats {
  type: 'process_stats'
  role: Role
  dpRank: number
  tpRank: number
  pid: number
  rssBytes: number
  /** The main thread's JavaScript heap in use, and the memory of its ArrayBuffers and other external objects. */
  heapUsedBytes: number
  externalBytes: number
  /** Requests this process holds state for. */
  liveRequests: number
  /** Requests with an open trace context here (0 when tracing is off). */
  tracedRequests: number
  /** Spans lost to a full queue or a failed export, since the process started. */
  droppedSpans: number
  /** The flight recorder's held spans, their approximate bytes, and the spans dropped for its cap (absent: no recorder). */
  flightRecorder?: { spans: number; bytes: number; dropped: number }
  scheduler: {
    running: number
    waiting: number
    kvUsedTokens: number
    kvTotalTokens: number
    /** Decode batch size of every step since the last report. */
    batchSizes: Int32Array
    /** Tokens in the prefix cache now (absent: no cache). */
    cacheTokens?: number
    /** Since the last report: prompt tokens looked up in the prefix cache, and those found (vLLM's prefix_cache_queries / _hits). */
    cacheQueryTokens?: number
    cacheHitTokens?: number
    /** Steps since the last report that ran a heavy client's sequences short beside a light client (loop.ts stepSlots). */
    limitedSteps?: number
  } | null
  /** cacheBlocks: KV blocks this rank holds, its sequences' and the prefix cache's (absent: not reported). */
  /** grammarThreads / grammarMemoryBytes: the rank's grammar threads and their WebAssembly memory (absent: none). */
  worker: { cachedTokens: number; sequences: number; cacheBlocks?: number; grammarThreads?: number; grammarMemoryBytes?: number } | null
}

/**
 * Child → server, with tracing on and only after an export carried a request's slice: per request
 * (its rid in the pipeline), the W3C traceparent of the latest top-level slice this process has
 * exported for it (src/tracing/slice-marks.ts). The server keeps the last one per process, so that a
 * request resumed after this process died links its new attempt's thread spans to it (resume.ts).
 */
export interface SliceMarks {
  type: 'slice_marks'
  role: Role
  dpRank: number
  tpRank: number
  pid: number
  rids: string[]
  /** Per entry of rids: that request's latest exported slice, a W3C traceparent. */
  slices: string[]
}

/**
 * server → tokenizer: vLLM's /tokenize (text, or chat messages through the template) and
 * /detokenize (`tokens`), answered with a TokenizeOutput or a ReqError of the same rid.
 */
export interface TokenizeReq {
  type: 'tokenize'
  rid: string
  /** Exactly one of text, messages and tokens is set; tokens means detokenize. */
  text: string | null
  messages: ChatMessage[] | null
  tools: ChatTool[] | null
  tokens: number[] | null
  addSpecialTokens: boolean
  addGenerationPrompt: boolean
  /** Also answer each token's vocabulary string. */
  tokenStrs: boolean
}

/** tokenizer → server: the answer to a TokenizeReq. */
export interface TokenizeOutput {
  type: 'tokenize_out'
  rid: string
  tokens: number[]
  tokenStrs: string[] | null
  /** The decoded text (detokenize), else null. */
  text: string | null
}

/** node agent → server (node 0): one of its workers died; the agent starts it again itself. */
export interface ProcessExited {
  type: 'process_exited'
  key: string
  code: number | null
  signal: string | null
}

/** server (node 0) → node agent: kill this worker and start it again (its TP group restarts). */
export interface RestartProcess {
  type: 'restart_process'
  key: string
}

/** launcher → children: the run-time trace setting changed (POST /v1/trace/setting). */
export interface TraceSetting {
  type: 'trace_setting'
  level: TraceLevel
  sampleRate: number
}

/**
 * launcher → children: tail sampling's verdicts (--trace-keep): the traces whose held spans each
 * child exports (`keep`) or discards (`drop`). Batched: one message per interval, never one per request.
 */
export interface TraceVerdict {
  type: 'trace_verdict'
  /** Trace ids (32 hex digits). */
  keep: string[]
  drop: string[]
}

/**
 * launcher → children: the flight recorder's window to the export queue (POST /v1/trace/dump,
 * src/tracing/flight-recorder.ts). Each child answers with trace_dumped.
 */
export interface TraceDump {
  type: 'trace_dump'
  /** Which dump the answers belong to. */
  id: number
}

/** child → server: what a trace_dump sent to this process's export queue. */
export interface TraceDumped {
  type: 'trace_dumped'
  role: Role
  dpRank: number
  tpRank: number
  pid: number
  id: number
  traces: number
  spans: number
}

/**
 * launcher → tokenizer: a data-parallel group went down (one of its processes died: its requests
 * fail, dispatch skips it) or came back.
 */
export interface GroupState {
  type: 'group_state'
  dpRank: number
  up: boolean
  reason: string
  /** The process whose death took the group down (its key), when one did. */
  process?: string
}

/** launcher → children: a peer died; drop all request state (its requests were failed). */
export interface ResetState {
  type: 'reset'
  reason: string
}

export type Message =
  | GenerateReqInput
  | TokenizedGenerateReqInput
  | AbortReq
  | ForwardBatch
  | ForwardBatchOutput
  | BatchTokenIdOutput
  | BatchStrOutput
  | ReqError
  | GrammarPrepare
  | GrammarReady
  | GrammarCancel
  | ProcessReady
  | ProcessFatal
  | ResetState
  | TraceSetting
  | TraceVerdict
  | TraceDump
  | TraceDumped
  | GroupState
  | ProcessStats
  | SliceMarks
  | ProcessExited
  | RestartProcess
  | TokenizeReq
  | TokenizeOutput
  | KvExpect
  | KvCancel
  | KvArrived
  | KvTransfer

export type MessageType = Message['type']
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>
