/**
 * Attribute keys: OpenTelemetry gen_ai semantic conventions where one exists, vLLM's
 * gen_ai.latency.* where users know them from vLLM, `spanserve.*` for the rest.
 */
import type { Attributes } from '@opentelemetry/api'
import { runtime } from './runtime.ts'

// gen_ai semantic conventions
export const GEN_AI_OPERATION_NAME = 'gen_ai.operation.name'
export const GEN_AI_SYSTEM = 'gen_ai.system'
export const GEN_AI_REQUEST_MODEL = 'gen_ai.request.model'
export const GEN_AI_REQUEST_MAX_TOKENS = 'gen_ai.request.max_tokens'
export const GEN_AI_REQUEST_TEMPERATURE = 'gen_ai.request.temperature'
export const GEN_AI_REQUEST_TOP_P = 'gen_ai.request.top_p'
export const GEN_AI_REQUEST_TOP_K = 'gen_ai.request.top_k'
export const GEN_AI_REQUEST_SEED = 'gen_ai.request.seed'
export const GEN_AI_REQUEST_PRESENCE_PENALTY = 'gen_ai.request.presence_penalty'
export const GEN_AI_REQUEST_FREQUENCY_PENALTY = 'gen_ai.request.frequency_penalty'
export const GEN_AI_RESPONSE_ID = 'gen_ai.response.id'
export const GEN_AI_RESPONSE_MODEL = 'gen_ai.response.model'
export const GEN_AI_RESPONSE_FINISH_REASONS = 'gen_ai.response.finish_reasons'
export const GEN_AI_USAGE_INPUT_TOKENS = 'gen_ai.usage.input_tokens'
export const GEN_AI_USAGE_OUTPUT_TOKENS = 'gen_ai.usage.output_tokens'
/** Content keys as vLLM records them; only set with --trace-record-content. */
export const GEN_AI_PROMPT = 'gen_ai.prompt'
export const GEN_AI_COMPLETION = 'gen_ai.completion'

// vLLM's latency attributes (seconds, as doubles)
export const GEN_AI_LATENCY_TIME_IN_QUEUE = 'gen_ai.latency.time_in_queue'
export const GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN = 'gen_ai.latency.time_to_first_token'
export const GEN_AI_LATENCY_E2E = 'gen_ai.latency.e2e'
export const GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL = 'gen_ai.latency.time_in_model_prefill'
export const GEN_AI_LATENCY_TIME_IN_MODEL_DECODE = 'gen_ai.latency.time_in_model_decode'

// spanserve
export const SPANSERVE_REQUEST_ID = 'spanserve.request.id'
export const SPANSERVE_THREAD_LABEL = 'spanserve.thread.label'
export const SPANSERVE_TP_RANK = 'spanserve.tp_rank'
export const SPANSERVE_DP_RANK = 'spanserve.dp_rank'
export const SPANSERVE_PROCESS_ROLE = 'spanserve.process.role'
export const SPANSERVE_BATCH_SIZE = 'spanserve.batch.size'
export const SPANSERVE_STEP = 'spanserve.step'
/** A tensor-parallel rank's time in all-reduce during the slice, ms. */
export const SPANSERVE_TP_ALL_REDUCE_MS = 'spanserve.tp.all_reduce_ms'
/** A prefill chunk's first position and its token count. */
export const SPANSERVE_PREFILL_START = 'spanserve.prefill.start'
export const SPANSERVE_PREFILL_TOKENS = 'spanserve.prefill.tokens'
export const SPANSERVE_DECODE_STEPS = 'spanserve.decode.steps'
export const SPANSERVE_ABORT_REASON = 'spanserve.abort.reason'
export const SPANSERVE_PREEMPT_REASON = 'spanserve.preempt.reason'
/** request_resumed: why (tokenizer_died, scheduler_died, worker_died, unavailable), which process died, its pid. */
export const SPANSERVE_RESUME_REASON = 'spanserve.resume.reason'
export const SPANSERVE_RESUME_PROCESS = 'spanserve.resume.process'
export const SPANSERVE_RESUME_PROCESS_PID = 'spanserve.resume.process_pid'
/** Tokens already sent that the new attempt continues from, and how long it waited for a restart (ms). */
export const SPANSERVE_RESUME_TOKENS_CARRIED = 'spanserve.resume.tokens_carried'
export const SPANSERVE_RESUME_WAIT_MS = 'spanserve.resume.wait_ms'

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
 * Prompt/completion text, only when --trace-record-content is on (otherwise undefined, and
 * nothing about the content leaves the process). Cut to the attribute length limit here so a
 * long prompt is not copied around before the SDK would cut it anyway.
 */
export function contentAttributes(prompt?: string, completion?: string): Attributes | undefined {
  if (!runtime.enabled || !runtime.recordContent) return undefined
  const a: Attributes = {}
  if (prompt !== undefined) a[GEN_AI_PROMPT] = cutToLimit(prompt)
  if (completion !== undefined) a[GEN_AI_COMPLETION] = cutToLimit(completion)
  return a
}

/** A string attribute value cut to the attribute length limit, as the SDK's span limits cut it. */
export function cutToLimit(value: string): string {
  const limit = runtime.valueLengthLimit
  return limit > 0 && value.length > limit ? value.slice(0, limit) : value
}
