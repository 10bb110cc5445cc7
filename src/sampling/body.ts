/**
 * The request body's sampling fields (OpenAI's, with vLLM's extensions): their JSON schemas, which
 * the route schemas spread in, and their mapping onto SamplingParams. A bad value is refused with a
 * 400 naming the field (`param`), by the schema or, for what a schema cannot say, here.
 */
import { SpanserveError } from '../errors.ts'
import type { SamplingDefaults } from './defaults.ts'
import type { SamplingParams } from './params.ts'

export const samplingFieldSchemas = {
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: ['integer', 'null'], minimum: -1, maximum: 1_000_000 },
  seed: { type: ['integer', 'null'], minimum: -(2 ** 63), maximum: 2 ** 64 },
  presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  repetition_penalty: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 100 },
  min_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  min_tokens: { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000 },
  stop_token_ids: { type: ['array', 'null'], maxItems: 256, items: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 } },
  // Token ids as JSON object keys (OpenAI's shape), each to a bias added to its logit.
  logit_bias: {
    type: ['object', 'null'],
    maxProperties: 1024,
    propertyNames: { pattern: '^(0|[1-9][0-9]{0,9})$' },
    additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
  },
} as const

export interface SamplingFields {
  temperature?: number | null
  top_p?: number | null
  top_k?: number | null
  seed?: number | null
  presence_penalty?: number | null
  frequency_penalty?: number | null
  repetition_penalty?: number | null
  min_p?: number | null
  min_tokens?: number | null
  stop_token_ids?: number[] | null
  logit_bias?: Record<string, number> | null
}

/** Seeds wider than 32 bits are folded: the sampler's generator has 32 bits of state. */
function foldSeed(seed: number): number {
  return Number(BigInt.asUintN(32, BigInt(seed)))
}

/**
 * The request's SamplingParams: its fields, else the model's defaults. `maxTokens` < 0: the rest of
 * the context (not known yet). Neutral values of the optional fields are left out.
 */
export function samplingFrom(body: SamplingFields, defaults: SamplingDefaults, maxTokens: number): SamplingParams {
  const topK = body.top_k ?? defaults.topK
  const p: SamplingParams = {
    temperature: body.temperature ?? defaults.temperature,
    topP: body.top_p ?? defaults.topP,
    topK: topK < 0 ? 0 : topK,
    seed: body.seed == null ? null : foldSeed(body.seed),
  }
  if (body.presence_penalty) p.presencePenalty = body.presence_penalty
  if (body.frequency_penalty) p.frequencyPenalty = body.frequency_penalty
  const repetition = body.repetition_penalty ?? defaults.repetitionPenalty
  if (repetition !== 1) p.repetitionPenalty = repetition
  const minP = body.min_p ?? defaults.minP
  if (minP > 0) p.minP = minP
  if (body.min_tokens) {
    if (maxTokens >= 0 && body.min_tokens > maxTokens) {
      throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `min_tokens (${body.min_tokens}) must be less than or equal to max_tokens (${maxTokens})`, 'min_tokens')
    }
    p.minTokens = body.min_tokens
  }
  if (body.stop_token_ids && body.stop_token_ids.length > 0) p.stopTokenIds = [...new Set(body.stop_token_ids)]
  if (body.logit_bias) {
    const pairs: [number, number][] = []
    for (const [id, bias] of Object.entries(body.logit_bias)) if (bias !== 0) pairs.push([Number(id), bias])
    if (pairs.length > 0) p.logitBias = pairs
  }
  return p
}

/** Token ids the request names must be in the vocabulary: refused with the field at fault. */
export function checkTokenIds(p: SamplingParams, vocabSize: number): void {
  const check = (ids: Iterable<number>, param: string) => {
    for (const id of ids) {
      if (id >= vocabSize) throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', `token id ${id} in ${param} is outside the vocabulary (0..${vocabSize - 1})`, param)
    }
  }
  if (p.stopTokenIds) check(p.stopTokenIds, 'stop_token_ids')
  if (p.logitBias) check(p.logitBias.map(([id]) => id), 'logit_bias')
}
