/**
 * JSON schemas of the request bodies (OpenAI's, with vLLM's extensions). As vLLM does, a field this
 * server does not know is ignored, and named in one warning log line (unknown-fields.ts); a known
 * field is validated strictly (400 with `param`). OpenAI options spanserve does not implement are
 * accepted at their neutral value and refused otherwise; the OpenAI SDK's fields that mean nothing
 * to a self-hosted server (`metadata`, `store`, `service_tier`, ...) are accepted and ignored.
 * docs/api.md says what happens to each field.
 */
import { samplingFieldSchemas, type SamplingFields } from '../../sampling/body.ts'
import { constraintFieldSchemas } from './structured-output/request.ts'

/**
 * SGLang's prefill/decode fields, which the router sets (generation/disaggregation.ts): the room that
 * pairs a request's prefill and decode instances, and the decode instance's KV address.
 */
export const bootstrapFieldSchemas = {
  bootstrap_host: { type: ['string', 'null'], minLength: 1, maxLength: 253 },
  bootstrap_port: { type: ['integer', 'null'], minimum: 1, maximum: 65535 },
  bootstrap_room: { type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
} as const

export interface BootstrapFields {
  bootstrap_host?: string | null
  bootstrap_port?: number | null
  bootstrap_room?: number | null
}

const samplingProperties = {
  model: { type: 'string', maxLength: 256 },
  max_tokens: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
  stop: {
    anyOf: [{ type: 'string', minLength: 1, maxLength: 256 }, { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 256 } }, { type: 'null' }],
  },
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    properties: { include_usage: { type: ['boolean', 'null'] }, continuous_usage_stats: { type: ['boolean', 'null'] } },
  },
  // Choices per prompt: each its own sequence (seeded ones with seed + index, as vLLM does).
  n: { type: ['integer', 'null'], minimum: 1, maximum: 128 },
  user: { type: ['string', 'null'], maxLength: 256 },
  // The OpenAI SDK's bookkeeping fields: accepted and ignored (nothing is stored or billed here).
  metadata: { type: ['object', 'null'], maxProperties: 16, additionalProperties: { type: 'string', maxLength: 512 } },
  store: { type: ['boolean', 'null'] },
  service_tier: { type: ['string', 'null'], maxLength: 64 },
  ignore_eos: { type: ['boolean', 'null'] },
  // temperature, top_p, top_k, seed, the penalties, min_p, min_tokens, stop_token_ids, logit_bias.
  ...samplingFieldSchemas,
  // Structured output: response_format, guided_json/_regex/_choice/_grammar, structured_outputs (src/structured-output/ and src/server/http/structured-output/).
  ...constraintFieldSchemas,
  ...bootstrapFieldSchemas,
} as const

export const completionBody = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...samplingProperties,
    // 0 only with echo (the prompt's logprobs alone, as lm-evaluation-harness asks): generation/checks.ts.
    max_tokens: { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000 },
    prompt: {
      anyOf: [
        { type: 'string' },
        // Several prompts: choices indexed prompt-major, n per prompt.
        { type: 'array', minItems: 1, maxItems: 128, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer' } },
        { type: 'array', minItems: 1, maxItems: 128, items: { type: 'array', minItems: 1, items: { type: 'integer' } } },
      ],
    },
    echo: { type: ['boolean', 'null'] },
    // The legacy shape: logprobs of each token and of this many most likely ones.
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    // Sequences generated per prompt (≥ n); the n with the highest mean logprob are returned.
    best_of: { type: ['integer', 'null'], minimum: 1, maximum: 128 },
    suffix: { type: 'null' },
  },
} as const

const contentPart = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const

const content = { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 4096, items: contentPart }] } as const

/** A function name as OpenAI allows it. */
const functionName = { type: 'string', pattern: '^[a-zA-Z0-9_.:-]{1,64}$' } as const

const toolCall = {
  type: 'object',
  required: ['id', 'type', 'function'],
  properties: {
    id: { type: 'string', maxLength: 256 },
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name', 'arguments'],
      properties: { name: functionName, arguments: { type: 'string' } },
    },
  },
} as const

const message = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
    // null or absent only on an assistant message (one that made tool calls, typically).
    content: { anyOf: [content, { type: 'null' }] },
    name: { type: 'string', maxLength: 256 },
    tool_calls: { type: ['array', 'null'], maxItems: 128, items: toolCall },
    tool_call_id: { type: 'string', maxLength: 256 },
    refusal: { type: ['string', 'null'] },
  },
  allOf: [
    { if: { required: ['role'], properties: { role: { const: 'tool' } } }, then: { required: ['content', 'tool_call_id'], properties: { content } } },
    { if: { required: ['role'], properties: { role: { enum: ['system', 'developer', 'user'] } } }, then: { required: ['content'], properties: { content } } },
  ],
} as const

const tool = {
  type: 'object',
  required: ['type', 'function'],
  properties: {
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name'],
      properties: {
        name: functionName,
        description: { type: ['string', 'null'] },
        // A JSON Schema; the template shows it to the model as given.
        parameters: { type: ['object', 'null'] },
        strict: { type: ['boolean', 'null'] },
      },
    },
  },
} as const

const namedToolChoice = {
  type: 'object',
  required: ['type', 'function'],
  properties: { type: { const: 'function' }, function: { type: 'object', required: ['name'], properties: { name: functionName } } },
} as const

export const chatBody = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
    messages: { type: 'array', minItems: 1, maxItems: 4096, items: message },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    tools: { type: ['array', 'null'], maxItems: 128, items: tool },
    tool_choice: { anyOf: [{ enum: ['none', 'auto', 'required', null] }, namedToolChoice] },
    parallel_tool_calls: { type: ['boolean', 'null'] },
    // Accepted and ignored: no reasoning mode, no predicted-output speed-up, cache keys of OpenAI's own.
    reasoning_effort: { type: ['string', 'null'], enum: ['none', 'minimal', 'low', 'medium', 'high', null] },
    verbosity: { type: ['string', 'null'], enum: ['low', 'medium', 'high', null] },
    prediction: { anyOf: [{ type: 'null' }, { type: 'object', required: ['type', 'content'], properties: { type: { const: 'content' }, content } }] },
    prompt_cache_key: { type: ['string', 'null'], maxLength: 1024 },
    safety_identifier: { type: ['string', 'null'], maxLength: 256 },
    // Text is the only output there is: ["text"] is accepted, audio refused.
    modalities: { type: ['array', 'null'], maxItems: 1, items: { const: 'text' } },
  },
} as const

export interface SamplingBody extends SamplingFields, BootstrapFields {
  model: string
  max_tokens?: number | null
  stop?: string | string[] | null
  stream?: boolean | null
  stream_options?: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null
  n?: number | null
  user?: string | null
  ignore_eos?: boolean | null
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[] | number[][]
  echo?: boolean | null
  logprobs?: number | null
  best_of?: number | null
}

export interface ToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

export interface Tool {
  type: 'function'
  function: { name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null }
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } }

export interface ChatBodyMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool'
  content?: string | { type: 'text'; text: string }[] | null
  name?: string
  tool_calls?: ToolCall[] | null
  tool_call_id?: string
}

export interface ChatBody extends SamplingBody {
  max_completion_tokens?: number | null
  logprobs?: boolean | null
  top_logprobs?: number | null
  messages: ChatBodyMessage[]
  tools?: Tool[] | null
  tool_choice?: ToolChoice | null
  parallel_tool_calls?: boolean | null
}
