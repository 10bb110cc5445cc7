/**
 * Span and event names users know from SGLang (slices) and vLLM (the request root), each slice
 * with its level, the process that records it and what it covers: the one place a slice is
 * declared. docs/tracing.md's tables are generated from these (tools/docs.ts).
 */
import type { Role, SliceRef, SliceSpec, TraceLevel } from './types.ts'

export const REQUEST_ROOT_SPAN = 'llm_request'

/** A slice as declared here: what tools/docs.ts needs too. */
export interface SliceDoc extends SliceSpec {
  readonly process: Role
  readonly what: string
}

export const SLICES = {
  apiServerDispatch: { name: 'api_server_dispatch', level: 1, process: 'server', what: "from the request root's start until the request is handed to the tokenizer" },
  tokenize: { name: 'tokenize', level: 1, process: 'tokenizer', what: 'the prompt (or chat, through its template) to token ids' },
  dpcDispatch: { name: 'dpc_dispatch', level: 2, process: 'tokenizer', what: "handing the tokenized request to a data-parallel group's scheduler" },
  prefillWaiting: { name: 'prefill_waiting', level: 1, process: 'scheduler', what: 'queue time: from arrival until the request is admitted to a batch' },
  chunkedPrefill: { name: 'chunked_prefill', level: 2, process: 'worker', what: 'one prefill chunk of a prompt longer than --max-prefill-tokens, but its last' },
  prefillForward: { name: 'prefill_forward', level: 1, process: 'worker', what: "the model run that ends the prompt's prefill and samples the first token" },
  decodeForward: { name: 'decode_forward', level: 3, process: 'worker', what: 'one decode step of a batch, one slice per request in it' },
  decodeLoop: { name: 'decode_loop', level: 1, process: 'worker', what: "below level 3: a request's decode steps folded into one slice, ended by its next slice or its finish" },
  grammarCompile: {
    name: 'grammar_compile',
    level: 1,
    process: 'worker',
    what: "a constrained request's grammar (JSON schema, regex, choice, EBNF or tool calls) compiled against the vocabulary, or found in the cache, before its prefill",
  },
  // Prefill/decode disaggregation: SGLang's slice names, on each side of a bootstrap room.
  prefillBootstrap: { name: 'prefill_bootstrap', level: 1, process: 'worker', what: "prefill instance: finding (or connecting) the decode instance's KV socket for the request's bootstrap room" },
  prefillTransferKvCache: {
    name: 'prefill_transfer_kv_cache',
    level: 1,
    process: 'worker',
    what: "prefill instance: the prompt's whole KV blocks copied out and queued to the decode instance; the decode side's decode_transferred links to it",
  },
  decodePrepare: { name: 'decode_prepare', level: 1, process: 'scheduler', what: "decode instance: queue time until the request's KV blocks are allocated (prefill_waiting's place)" },
  decodeBootstrap: { name: 'decode_bootstrap', level: 1, process: 'worker', what: "decode instance: the worker registers the request's bootstrap room (taking its KV if it came first)" },
  decodeWaiting: {
    name: 'decode_waiting',
    level: 1,
    process: 'scheduler',
    what: "decode instance: from the KV blocks' allocation until the prefill instance's KV is in them, or --disaggregation-transfer-timeout passed and the request prefills here",
  },
  decodeTransferred: {
    name: 'decode_transferred',
    level: 1,
    process: 'worker',
    what: "decode instance: the prefill instance's KV blocks written into the request's own, linked to the prefill side's prefill_transfer_kv_cache",
  },
  detokenize: { name: 'detokenize', level: 3, process: 'tokenizer', what: 'one batch of new token ids to text, one slice per request in it' },
} as const satisfies Record<string, SliceDoc>

/** The slice names, by the same keys: `SLICE.tokenize` is `'tokenize'`. */
export const SLICE = Object.fromEntries(Object.entries(SLICES).map(([key, s]) => [key, s.name])) as {
  readonly [K in keyof typeof SLICES]: (typeof SLICES)[K]['name']
}

/** The name of a slice as the calls take it (types.ts SliceRef). */
export function sliceName(slice: SliceRef): string
export function sliceName(slice: SliceRef | null): string | null
export function sliceName(slice: SliceRef | null | undefined): string | null | undefined
export function sliceName(slice: SliceRef | null | undefined): string | null | undefined {
  return typeof slice === 'object' && slice !== null ? slice.name : slice
}

/** The level to record a slice at: the one given, else the declared slice's own, else `otherwise`. */
export function sliceLevel(slice: SliceRef | null, given: TraceLevel | undefined, otherwise: TraceLevel): TraceLevel {
  return given ?? (typeof slice === 'object' && slice !== null ? slice.level : otherwise)
}

export interface EventSpec {
  readonly name: string
  readonly what: string
}

export const EVENTS = {
  firstToken: { name: 'first_token', what: 'the first output token reached the server' },
  aborted: { name: 'aborted', what: 'the client went away or the request was cancelled, with the reason' },
  finished: { name: 'finished', what: 'the last output reached the server, with the finish reasons' },
  requestResumed: { name: 'request_resumed', what: 'the request was lost with a dead process and resubmitted (src/server/engine-client/engine-client.ts)' },
} as const satisfies Record<string, EventSpec>

/** The event names, by the same keys. */
export const EVENT = Object.fromEntries(Object.entries(EVENTS).map(([key, e]) => [key, e.name])) as {
  readonly [K in keyof typeof EVENTS]: (typeof EVENTS)[K]['name']
}

/** Placeholder name of an anonymous slice until sliceEnd names it. */
export const ANONYMOUS_SLICE = '(anonymous)'
