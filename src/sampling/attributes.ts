/** The gen_ai semantic-convention attributes of a request's sampling, for its llm_request span. */
import type { Attributes } from '@opentelemetry/api'
import {
  GEN_AI_OUTPUT_TYPE,
  GEN_AI_REQUEST_FREQUENCY_PENALTY,
  GEN_AI_REQUEST_PRESENCE_PENALTY,
  GEN_AI_REQUEST_SEED,
  GEN_AI_REQUEST_TEMPERATURE,
  GEN_AI_REQUEST_TOP_K,
  GEN_AI_REQUEST_TOP_P,
} from '../tracing/attributes.ts'
import type { SamplingParams } from './params.ts'

/** The constraints whose output is JSON (gen_ai.output.type's `json`); the rest constrain text. */
const JSON_CONSTRAINTS: ReadonlySet<string> = new Set(['json_schema', 'json_object', 'tool_calls'])

/** Penalties are set only when the request uses them; the seed only when it gave one; the output type only under a constraint. */
export function samplingAttributes(p: SamplingParams): Attributes {
  const a: Attributes = {
    [GEN_AI_REQUEST_TEMPERATURE]: p.temperature,
    [GEN_AI_REQUEST_TOP_P]: p.topP,
    [GEN_AI_REQUEST_TOP_K]: p.topK,
  }
  if (p.seed !== null) a[GEN_AI_REQUEST_SEED] = p.seed
  if (p.presencePenalty !== undefined) a[GEN_AI_REQUEST_PRESENCE_PENALTY] = p.presencePenalty
  if (p.frequencyPenalty !== undefined) a[GEN_AI_REQUEST_FREQUENCY_PENALTY] = p.frequencyPenalty
  if (p.constraint !== undefined) a[GEN_AI_OUTPUT_TYPE] = JSON_CONSTRAINTS.has(p.constraint.type) ? 'json' : 'text'
  return a
}
