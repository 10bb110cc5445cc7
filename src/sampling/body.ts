/**
 * The request body's sampling fields (OpenAI's, with vLLM's extensions): their JSON schemas, which
 * the route schemas spread in, and the check of the token ids they name, which the tokenizer makes
 * (it knows the vocabulary). A bad value is refused with a 400 naming the field (`param`). The
 * fields are mapped onto SamplingParams, and checked against each other, by the server's params
 * build (src/server/http/generation/params.ts).
 */
import { SpanserveError } from '../errors.ts'
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

/** Token ids the request names must be in the vocabulary: refused with the field at fault. */
export function checkTokenIds(p: SamplingParams, vocabSize: number): void {
  const check = (ids: Iterable<number>, param: string) => {
    for (const id of ids) {
      if (id >= vocabSize) throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', `token id ${id} in ${param} is outside the vocabulary (0..${vocabSize - 1})`, param)
    }
  }
  if (p.stopTokenIds) check(p.stopTokenIds, 'stop_token_ids')
  if (p.logitBias)
    check(
      p.logitBias.map(([id]) => id),
      'logit_bias',
    )
}
