/**
 * JSON schemas of the request bodies (OpenAI's, with vLLM's top_k and ignore_eos). As OpenAI does,
 * an unknown field is refused ("Unrecognized request argument"). OpenAI options spanserve does not
 * implement are accepted at their neutral value (what clients such as LangChain send by default)
 * and refused otherwise, never silently ignored.
 */
const samplingProperties = {
  model: { type: 'string', maxLength: 256 },
  max_tokens: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: ['integer', 'null'], minimum: -1, maximum: 1_000_000 },
  seed: { type: ['integer', 'null'], minimum: -(2 ** 63), maximum: 2 ** 64 },
  stop: {
    anyOf: [
      { type: 'string', minLength: 1, maxLength: 256 },
      { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 256 } },
      { type: 'null' },
    ],
  },
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { include_usage: { type: ['boolean', 'null'] } },
  },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 1 },
  user: { type: ['string', 'null'], maxLength: 256 },
  ignore_eos: { type: ['boolean', 'null'] },
  // Neutral values only.
  frequency_penalty: { type: ['number', 'null'], enum: [0, null] },
  presence_penalty: { type: ['number', 'null'], enum: [0, null] },
  logit_bias: { anyOf: [{ type: 'null' }, { type: 'object', maxProperties: 0 }] },
} as const

export const completionBody = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'prompt'],
  properties: {
    ...samplingProperties,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer' } },
        { type: 'array', minItems: 1, maxItems: 1, items: { type: 'array', minItems: 1, items: { type: 'integer' } } },
      ],
    },
    echo: { type: ['boolean', 'null'], enum: [false, null] },
    logprobs: { type: 'null' },
    best_of: { type: ['integer', 'null'], enum: [1, null] },
    suffix: { type: 'null' },
  },
} as const

const contentPart = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const

export const chatBody = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'messages'],
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 4096,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: contentPart }] },
          name: { type: 'string' },
        },
      },
    },
    logprobs: { type: ['boolean', 'null'], enum: [false, null] },
    top_logprobs: { type: 'null' },
    tools: { anyOf: [{ type: 'null' }, { type: 'array', maxItems: 0 }] },
    tool_choice: { enum: ['none', null] },
    response_format: { anyOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, required: ['type'], properties: { type: { const: 'text' } } }] },
    parallel_tool_calls: { type: ['boolean', 'null'] },
  },
} as const

export interface SamplingBody {
  model: string
  max_tokens?: number | null
  temperature?: number | null
  top_p?: number | null
  top_k?: number | null
  seed?: number | null
  stop?: string | string[] | null
  stream?: boolean | null
  stream_options?: { include_usage?: boolean | null } | null
  n?: number | null
  user?: string | null
  ignore_eos?: boolean | null
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[] | number[][]
}

export interface ChatBody extends SamplingBody {
  max_completion_tokens?: number | null
  messages: { role: string; content: string | { type: 'text'; text: string }[]; name?: string }[]
}
