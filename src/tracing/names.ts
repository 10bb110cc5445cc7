/**
 * Span and event names users know from SGLang (slices) and vLLM (the request root).
 * Suggested levels: 1 = thread spans and the main stages, 2 (default) = dispatch and
 * chunking detail, 3 = one slice per decode step.
 */
export const REQUEST_ROOT_SPAN = 'llm_request'

export const SLICE = {
  tokenize: 'tokenize',
  apiServerDispatch: 'api_server_dispatch',
  dpcDispatch: 'dpc_dispatch',
  prefillWaiting: 'prefill_waiting',
  chunkedPrefill: 'chunked_prefill',
  prefillForward: 'prefill_forward',
  decodeForward: 'decode_forward',
  decodeLoop: 'decode_loop',
  detokenize: 'detokenize',
} as const

export const EVENT = {
  firstToken: 'first_token',
  preempted: 'preempted',
  aborted: 'aborted',
  finished: 'finished',
  /** The request was lost with a dead process and resubmitted (src/server/engine.ts). */
  requestResumed: 'request_resumed',
} as const

/** Placeholder name of an anonymous slice until sliceEnd names it. */
export const ANONYMOUS_SLICE = '(anonymous)'
