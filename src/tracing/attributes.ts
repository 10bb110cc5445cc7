/**
 * Attribute keys: OpenTelemetry semantic conventions where one exists (gen_ai, error, http, url,
 * resource), vLLM's gen_ai.latency.* where users know them from vLLM, `spanserve.*` for the rest.
 * The one place an attribute name is spelled: each is declared with where it is set and what it
 * means, and docs/tracing.md's attribute table is generated from these (tools/docs.ts).
 */
import type { Attributes } from '@opentelemetry/api'
import { ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_ROUTE, ATTR_SERVICE_NAME, ATTR_URL_PATH } from '@opentelemetry/semantic-conventions'

export interface AttributeDoc {
  readonly key: string
  /** The spans, events or resource that carry it. */
  readonly on: string
  readonly meaning: string
}

const docs: AttributeDoc[] = []

/** Every attribute declared below, in declaration order. */
export const ATTRIBUTE_DOCS: readonly AttributeDoc[] = docs

/** Declares one attribute key with its documentation; returns the key. */
function attribute<K extends string>(key: K, on: string, meaning: string): K {
  docs.push({ key, on, meaning })
  return key
}

// gen_ai semantic conventions
export const GEN_AI_OPERATION_NAME = attribute('gen_ai.operation.name', '`llm_request`', '`text_completion` or `chat`')
export const GEN_AI_REQUEST_MODEL = attribute('gen_ai.request.model', '`llm_request`', 'the model the request named')
export const GEN_AI_REQUEST_MAX_TOKENS = attribute('gen_ai.request.max_tokens', '`llm_request`', "the request's token limit, when it gave one")
export const GEN_AI_REQUEST_TEMPERATURE = attribute('gen_ai.request.temperature', '`llm_request`', 'sampling temperature (0: greedy)')
export const GEN_AI_REQUEST_TOP_P = attribute('gen_ai.request.top_p', '`llm_request`', 'nucleus sampling cut')
export const GEN_AI_REQUEST_TOP_K = attribute('gen_ai.request.top_k', '`llm_request`', 'top-k cut (0: none)')
export const GEN_AI_REQUEST_SEED = attribute('gen_ai.request.seed', '`llm_request`', 'the seed, when the request gave one')
export const GEN_AI_REQUEST_PRESENCE_PENALTY = attribute('gen_ai.request.presence_penalty', '`llm_request`', 'when the request uses it')
export const GEN_AI_REQUEST_FREQUENCY_PENALTY = attribute('gen_ai.request.frequency_penalty', '`llm_request`', 'when the request uses it')
export const GEN_AI_OUTPUT_TYPE = attribute(
  'gen_ai.output.type',
  '`llm_request`',
  'the requested output format, when the request constrains it: `json` (json_schema, json_object, tool calls) or `text` (regex, choice, grammar)',
)
export const GEN_AI_REQUEST_CHOICE_COUNT = attribute(
  'gen_ai.request.choice.count',
  '`llm_request`',
  'choices asked for (n, or best_of when larger), when more than 1: each is a sequence with its own `llm_request` span in the same trace',
)
export const SPANSERVE_CHOICE_INDEX = attribute('spanserve.choice.index', '`llm_request`', 'which sequence of an n > 1 (or several-prompt) request this span is: its choice index, prompt-major')
export const GEN_AI_RESPONSE_ID = attribute('gen_ai.response.id', '`llm_request`', "the response's `id`")
export const GEN_AI_RESPONSE_MODEL = attribute('gen_ai.response.model', '`llm_request`', 'the model that answered')
export const GEN_AI_RESPONSE_FINISH_REASONS = attribute('gen_ai.response.finish_reasons', '`llm_request`, `finished` event', '`stop`, `length`, …')
export const GEN_AI_USAGE_INPUT_TOKENS = attribute('gen_ai.usage.input_tokens', '`llm_request`, `tokenize`', 'prompt tokens')
export const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = attribute(
  'gen_ai.usage.cache_read.input_tokens',
  '`llm_request`',
  'prompt tokens served from the prefix cache (included in gen_ai.usage.input_tokens), while the cache is on',
)
export const GEN_AI_USAGE_OUTPUT_TOKENS = attribute('gen_ai.usage.output_tokens', '`llm_request`, scheduler thread span', 'completion tokens')
/** Content keys as vLLM records them; only set with --trace-record-content. */
export const GEN_AI_PROMPT = attribute('gen_ai.prompt', '`llm_request`', 'the prompt, only with `--trace-record-content`')
export const GEN_AI_COMPLETION = attribute('gen_ai.completion', '`llm_request`', 'the completion, only with `--trace-record-content`')
export const GEN_AI_TOOL_DEFINITIONS = attribute(
  'gen_ai.tool.definitions',
  '`llm_request`',
  'the tools a chat or responses request offered, as JSON with their required properties only (`type`, `name`), only with `--trace-record-content`',
)

// vLLM's latency attributes (seconds, as doubles)
export const GEN_AI_LATENCY_TIME_IN_QUEUE = attribute('gen_ai.latency.time_in_queue', '`llm_request`', 'seconds waiting for admission')
export const GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN = attribute('gen_ai.latency.time_to_first_token', '`llm_request`', 'seconds to the first output token')
export const GEN_AI_LATENCY_E2E = attribute('gen_ai.latency.e2e', '`llm_request`', 'seconds from arrival to the last output')
export const GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL = attribute('gen_ai.latency.time_in_model_prefill', '`llm_request`', "seconds in the model's prefill runs")
export const GEN_AI_LATENCY_TIME_IN_MODEL_DECODE = attribute('gen_ai.latency.time_in_model_decode', '`llm_request`', "seconds in the model's decode runs")

// other semantic conventions
export const ERROR_TYPE = attribute(ATTR_ERROR_TYPE, '`llm_request` on failure', 'the error code ([errors.md](errors.md))')
export const SERVICE_NAME = attribute(ATTR_SERVICE_NAME, 'resource', '`--service-name`')
export const HOST_NAME = attribute('host.name', 'resource', "`--host-name`, else the machine's hostname")
export const PROCESS_PID = attribute('process.pid', 'resource', 'the process id')
/** Set by @fastify/otel on the HTTP server span; the trace tools read them. */
export const HTTP_REQUEST_METHOD = attribute(ATTR_HTTP_REQUEST_METHOD, 'HTTP server span (@fastify/otel)', 'GET, POST, …')
export const HTTP_ROUTE = attribute(ATTR_HTTP_ROUTE, 'HTTP server span (@fastify/otel)', 'the matched route')
export const URL_PATH = attribute(ATTR_URL_PATH, 'HTTP server span (@fastify/otel)', 'the request path')

// spanserve
export const USER_ID = attribute(
  'user.id',
  '`llm_request`',
  'the client the request counts for in fair scheduling: its `X-Spanserve-Client` header, `key:` and a hash of its bearer token, or `ip:` and its address (never a key itself; docs/operations.md, "Fair sharing between clients")',
)
export const SPANSERVE_REQUEST_ID = attribute('spanserve.request.id', '`llm_request`, thread spans', 'the request id (`x-request-id`)')
export const SPANSERVE_THREAD_LABEL = attribute('spanserve.thread.label', 'thread spans', '`Server`, `Tokenizer`, `Scheduler`, `Worker`, or a label set with `setThreadInfo`')
export const SPANSERVE_PROCESS_ROLE = attribute('spanserve.process.role', 'resource', 'server, tokenizer, scheduler, worker or router')
export const SPANSERVE_DISAGGREGATION_MODE = attribute(
  'spanserve.disaggregation.mode',
  'resource',
  "`prefill` or `decode` on an instance's processes under `--disaggregation-mode` (absent when co-located): which side of a bootstrap room a process is on",
)
export const SPANSERVE_ROUTER_INSTANCE = attribute('spanserve.router.instance', '`router_request`, its `attempt_failed` events', 'the URL of the instance the request was sent to')
export const SPANSERVE_ROUTER_DECISION = attribute(
  'spanserve.router.decision',
  '`router_request`',
  'why that instance: `cache_hit` (longest prefix match past the threshold), `cache_miss` (the least loaded, no match good enough) or `load_balanced` (load out of balance)',
)
export const SPANSERVE_ROUTER_MATCH_RATE = attribute('spanserve.router.match_rate', '`router_request`', "the share of the prompt's text the chosen instance was sent before (0 to 1)")
export const SPANSERVE_ROUTER_ATTEMPTS = attribute('spanserve.router.attempts', '`router_request`', 'attempts made, when more than one (a retry on another instance)')
export const SPANSERVE_ROUTER_PREFILL_INSTANCE = attribute(
  'spanserve.router.prefill_instance',
  '`Bootstrap Room 0x…` (router)',
  "prefill/decode disaggregation: the URL of the prefill instance the pair's prefill request was sent to (the last, after a retry); `spanserve.router.instance` names the decode instance",
)
export const SPANSERVE_BOOTSTRAP_ROOM = attribute(
  'spanserve.bootstrap_room',
  '`Bootstrap Room 0x…` (router)',
  "prefill/decode disaggregation: the bootstrap room, the integer under which the prefill instance sends a prompt's KV to the decode instance (the span name has it in hex, as SGLang's)",
)
export const SPANSERVE_TP_RANK = attribute('spanserve.tp_rank', 'thread spans, resource', 'tensor-parallel rank, where there is one')
export const SPANSERVE_DP_PREFIX_MATCH_TOKENS = attribute(
  'spanserve.dp.prefix_match_tokens',
  '`dpc_dispatch`',
  'with the prefix cache on: prompt tokens the chosen group is believed to hold cached (cache-aware dispatch)',
)
export const SPANSERVE_DP_RANK = attribute('spanserve.dp_rank', 'thread spans, resource', 'data-parallel rank, where there is one')
export const SPANSERVE_BATCH_SIZE = attribute('spanserve.batch.size', '`decode_forward`', "requests in the step's batch")
export const SPANSERVE_STEP = attribute(
  'spanserve.step',
  '`decode_forward`, `prefill_forward`, `chunked_prefill`',
  "the scheduler's batch number (with `--num-continuous-decode-steps N`, the up to N slices of one batch share it)",
)
/** A tensor-parallel rank's time in all-reduce during the slice, ms. */
export const SPANSERVE_TP_ALL_REDUCE_MS = attribute('spanserve.tp.all_reduce_ms', 'worker slices at `--tp-size` 2 or more', 'ms the rank spent in all-reduce during the slice')
/** A prefill chunk's first position and its token count. */
export const SPANSERVE_PREFILL_START = attribute('spanserve.prefill.start', '`prefill_forward`, `chunked_prefill`', "the chunk's first position")
export const SPANSERVE_PREFILL_TOKENS = attribute('spanserve.prefill.tokens', '`prefill_forward`, `chunked_prefill`', "the chunk's token count")
/** The prefix cache's share of a prompt, on each of its prefill slices. */
export const SPANSERVE_PREFILL_CACHED_TOKENS = attribute(
  'spanserve.prefill.cached_tokens',
  '`prefill_forward`, `chunked_prefill`',
  'prompt tokens the sequence started from in the prefix cache (not prefilled)',
)
/** Prefill/decode disaggregation: what crossed between instances, and how the decode side's wait ended. */
export const SPANSERVE_KV_TRANSFER_BLOCKS = attribute(
  'spanserve.kv_transfer.blocks',
  '`prefill_transfer_kv_cache`, `decode_transferred`',
  'whole KV blocks of the prompt sent (prefill side) or written (decode side: those past its own cached prefix)',
)
export const SPANSERVE_KV_TRANSFER_BYTES = attribute('spanserve.kv_transfer.bytes', '`prefill_transfer_kv_cache`', 'bytes of KV data sent')
export const SPANSERVE_KV_TRANSFER_OUTCOME = attribute(
  'spanserve.kv_transfer.outcome',
  '`decode_waiting`, `prefill_transfer_kv_cache`',
  '`transferred`; or why the decode instance prefills the prompt itself: `timeout`, `refused` (the KV did not match its prompt or model); on the prefill side `sent`, or `dropped` (the decode instance is not taking transfers)',
)
export const SPANSERVE_PREFILL_PREFILL_TOKENS = attribute(
  'spanserve.prefill.prefill_tokens',
  '`prefill_forward`, `chunked_prefill`',
  'prompt tokens prefilled so far, this chunk included (on `prefill_forward`: all the prompt less its cached tokens)',
)
export const SPANSERVE_QUEUE_MS = attribute('spanserve.queue.ms', '`prefill_waiting`', 'ms from arrival to admission')
export const SPANSERVE_DECODE_STEPS = attribute('spanserve.decode.steps', '`decode_loop`', 'decode steps folded into it')
export const SPANSERVE_GRAMMAR_TYPE = attribute('spanserve.grammar.type', '`grammar_compile`', '`json_schema`, `json_object`, `regex`, `choice`, `grammar`, `structural_tag` or `tool_calls`')
export const SPANSERVE_GRAMMAR_CACHE_HIT = attribute('spanserve.grammar.cache_hit', '`grammar_compile`', "whether the compiled grammar came from the worker's cache")
export const SPANSERVE_ABORT_REASON = attribute('spanserve.abort.reason', '`aborted` event', 'why the request stopped early')
/** request_resumed: why (tokenizer_died, scheduler_died, worker_died, unavailable), which process died, its pid. */
export const SPANSERVE_RESUME_REASON = attribute('spanserve.resume.reason', '`request_resumed` event', '`tokenizer_died`, `scheduler_died`, `worker_died` or `unavailable`')
export const SPANSERVE_RESUME_PROCESS = attribute('spanserve.resume.process', '`request_resumed` event', 'the process that died')
export const SPANSERVE_RESUME_PROCESS_PID = attribute('spanserve.resume.process_pid', '`request_resumed` event', 'its pid')
/** Tokens already sent that the new attempt continues from, and how long it waited for a restart (ms). */
export const SPANSERVE_RESUME_TOKENS_CARRIED = attribute('spanserve.resume.tokens_carried', '`request_resumed` event', 'tokens already sent that the new attempt continues from')
export const SPANSERVE_RESUME_WAIT_MS = attribute('spanserve.resume.wait_ms', '`request_resumed` event', 'ms it waited for a restart')
/** On a thread span's link (from carrier links): why it links, and the process that recorded the linked span. */
export const SPANSERVE_LINK_REASON = attribute(
  'spanserve.link.reason',
  'thread span links',
  "`resumed_from`: a resumed attempt's thread span links to the last slice the dead process exported for the lost attempt",
)
export const SPANSERVE_LINK_PROCESS = attribute('spanserve.link.process', 'thread span links', 'the process that recorded the linked span (for `resumed_from`, the one that died)')
export const SPANSERVE_LINK_PROCESS_PID = attribute('spanserve.link.process_pid', 'thread span links', 'its pid')
export const SPANSERVE_TRACE_KEPT_BY = attribute(
  'spanserve.trace.kept_by',
  '`llm_request`, with `--trace-keep`',
  'why tail sampling kept the trace: `failed`, `resumed`, `slow_ttft`, `slow_itl`, `slow_e2e`, or `sampled` (the head rate); absent on traces it drops',
)

export interface GenAiRequestInfo {
  operation?: 'text_completion' | 'chat' | (string & {})
  model?: string
  maxTokens?: number
  temperature?: number
  topP?: number
  topK?: number
  seed?: number
}

/** Request-side gen_ai attributes for the request root span; absent values are left out. */
export function genAiRequestAttributes(r: GenAiRequestInfo): Attributes {
  const a: Attributes = {}
  if (r.operation !== undefined) a[GEN_AI_OPERATION_NAME] = r.operation
  if (r.model !== undefined) a[GEN_AI_REQUEST_MODEL] = r.model
  if (r.maxTokens !== undefined) a[GEN_AI_REQUEST_MAX_TOKENS] = r.maxTokens
  if (r.temperature !== undefined) a[GEN_AI_REQUEST_TEMPERATURE] = r.temperature
  if (r.topP !== undefined) a[GEN_AI_REQUEST_TOP_P] = r.topP
  if (r.topK !== undefined) a[GEN_AI_REQUEST_TOP_K] = r.topK
  if (r.seed !== undefined) a[GEN_AI_REQUEST_SEED] = r.seed
  return a
}

export interface GenAiResponseInfo {
  id?: string
  model?: string
  finishReasons?: string[]
  inputTokens?: number
  cacheReadInputTokens?: number
  outputTokens?: number
  /** Latencies in seconds. */
  timeInQueue?: number
  timeToFirstToken?: number
  e2e?: number
  timeInModelPrefill?: number
  timeInModelDecode?: number
}

/** Response-side attributes (usage, finish reasons, vLLM latencies) for reqFinish. */
export function genAiResponseAttributes(r: GenAiResponseInfo): Attributes {
  const a: Attributes = {}
  if (r.id !== undefined) a[GEN_AI_RESPONSE_ID] = r.id
  if (r.model !== undefined) a[GEN_AI_RESPONSE_MODEL] = r.model
  if (r.finishReasons !== undefined) a[GEN_AI_RESPONSE_FINISH_REASONS] = r.finishReasons
  if (r.inputTokens !== undefined) a[GEN_AI_USAGE_INPUT_TOKENS] = r.inputTokens
  if (r.cacheReadInputTokens !== undefined) a[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = r.cacheReadInputTokens
  if (r.outputTokens !== undefined) a[GEN_AI_USAGE_OUTPUT_TOKENS] = r.outputTokens
  if (r.timeInQueue !== undefined) a[GEN_AI_LATENCY_TIME_IN_QUEUE] = r.timeInQueue
  if (r.timeToFirstToken !== undefined) a[GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN] = r.timeToFirstToken
  if (r.e2e !== undefined) a[GEN_AI_LATENCY_E2E] = r.e2e
  if (r.timeInModelPrefill !== undefined) a[GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL] = r.timeInModelPrefill
  if (r.timeInModelDecode !== undefined) a[GEN_AI_LATENCY_TIME_IN_MODEL_DECODE] = r.timeInModelDecode
  return a
}

/**
 * Batch attributes for batchSlice: build once per step, shared by every request in it. The step
 * numbers the scheduler's batch, so it is the batch's id too; nothing else is repeated per slice.
 */
export function batchAttributes(size: number, step: number): Attributes {
  return { [SPANSERVE_BATCH_SIZE]: size, [SPANSERVE_STEP]: step }
}

/**
 * Prompt/completion text as attributes, cut to `limit` (the attribute value length limit; 0: none)
 * here so a long prompt is not copied around before the SDK would cut it anyway. Whether content
 * may be recorded at all is the caller's question (trace.ts contentAttributes).
 */
export function promptCompletionAttributes(prompt: string | undefined, completion: string | undefined, limit: number, toolNames?: readonly string[]): Attributes {
  const a: Attributes = {}
  if (prompt !== undefined) a[GEN_AI_PROMPT] = cutToLimit(prompt, limit)
  if (completion !== undefined) a[GEN_AI_COMPLETION] = cutToLimit(completion, limit)
  // The semantic conventions advise only the required properties by default: a large schema stays out.
  if (toolNames && toolNames.length > 0) a[GEN_AI_TOOL_DEFINITIONS] = cutToLimit(JSON.stringify(toolNames.map((name) => ({ type: 'function', name }))), limit)
  return a
}

/** A string attribute value cut to `limit` characters (0: no limit), as the SDK's span limits cut it. */
export function cutToLimit(value: string, limit: number): string {
  return limit > 0 && value.length > limit ? value.slice(0, limit) : value
}
