/**
 * The body of POST /v1/responses (OpenAI's Responses API), as far as a self-hosted model can serve
 * it: text or item input, instructions, function tools and their outputs, text.format, and
 * previous_response_id. OpenAI's hosted tools (web_search, file_search, ...) are refused by name.
 */
import { samplingFieldSchemas } from '../../../sampling/body.ts'
import { constraintFieldSchemas } from '../structured-output/request.ts'
import { bootstrapFieldSchemas, type BootstrapFields } from '../schemas.ts'

const functionName = { type: 'string', pattern: '^[a-zA-Z0-9_.:-]{1,64}$' } as const

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { enum: ['input_text', 'output_text'] }, text: { type: 'string' } },
} as const

const item = {
  type: 'object',
  properties: {
    type: { enum: ['message', 'function_call', 'function_call_output', 'reasoning'] },
    role: { enum: ['system', 'developer', 'user', 'assistant'] },
    content: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 4096, items: textPart }] },
    call_id: { type: 'string', minLength: 1, maxLength: 256 },
    name: functionName,
    arguments: { type: 'string' },
    output: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 4096, items: textPart }] },
    id: { type: ['string', 'null'], maxLength: 256 },
    status: { type: ['string', 'null'] },
  },
  allOf: [
    { if: { not: { required: ['type'] } }, then: { required: ['role', 'content'] } },
    { if: { required: ['type'], properties: { type: { const: 'message' } } }, then: { required: ['role', 'content'] } },
    { if: { required: ['type'], properties: { type: { const: 'function_call' } } }, then: { required: ['call_id', 'name', 'arguments'] } },
    { if: { required: ['type'], properties: { type: { const: 'function_call_output' } } }, then: { required: ['call_id', 'output'] } },
  ],
} as const

const tool = {
  type: 'object',
  required: ['type', 'name'],
  properties: {
    type: { const: 'function' },
    name: functionName,
    description: { type: ['string', 'null'] },
    parameters: { type: ['object', 'null'] },
    strict: { type: ['boolean', 'null'] },
  },
} as const

const format = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { enum: ['text', 'json_object', 'json_schema'] },
    name: { type: 'string', maxLength: 64 },
    description: { type: 'string' },
    schema: { type: 'object' },
    strict: { type: ['boolean', 'null'] },
  },
  allOf: [{ if: { properties: { type: { const: 'json_schema' } } }, then: { required: ['name', 'schema'] } }],
} as const

export const responsesBody = {
  type: 'object',
  required: ['model', 'input'],
  properties: {
    model: { type: 'string', maxLength: 256 },
    input: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, maxItems: 4096, items: item }] },
    instructions: { type: ['string', 'null'] },
    max_output_tokens: { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 },
    temperature: samplingFieldSchemas.temperature,
    top_p: samplingFieldSchemas.top_p,
    stream: { type: ['boolean', 'null'] },
    store: { type: ['boolean', 'null'] },
    previous_response_id: { type: ['string', 'null'], maxLength: 256 },
    tools: { type: ['array', 'null'], maxItems: 128, items: tool },
    tool_choice: {
      anyOf: [{ enum: ['none', 'auto', 'required', null] }, { type: 'object', required: ['type', 'name'], properties: { type: { const: 'function' }, name: functionName } }],
    },
    parallel_tool_calls: { type: ['boolean', 'null'] },
    text: { type: ['object', 'null'], properties: { format, verbosity: { enum: ['low', 'medium', 'high', null] } } },
    // vLLM's extension (its Responses requests take it as chat's): a regex, choice, grammar, … constraint.
    structured_outputs: constraintFieldSchemas.structured_outputs,
    // Alternatives per token when include asks for message.output_text.logprobs (vLLM's rule).
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    // message.output_text.logprobs is served; OpenAI's other include values name hosted-tool output: ignored.
    include: { type: ['array', 'null'], maxItems: 16, items: { type: 'string', maxLength: 256 } },
    // Accepted and ignored, as in chat: bookkeeping, reasoning settings.
    metadata: { type: ['object', 'null'], maxProperties: 16, additionalProperties: { type: 'string', maxLength: 512 } },
    user: { type: ['string', 'null'], maxLength: 256 },
    service_tier: { type: ['string', 'null'], maxLength: 64 },
    reasoning: { type: ['object', 'null'] },
    truncation: { enum: ['auto', 'disabled', null] },
    prompt_cache_key: { type: ['string', 'null'], maxLength: 1024 },
    safety_identifier: { type: ['string', 'null'], maxLength: 256 },
    // Background runs need a job store: only the default.
    background: { enum: [false, null] },
    ...bootstrapFieldSchemas,
  },
} as const

export interface ResponsesTextPart {
  type: 'input_text' | 'output_text'
  text: string
}

export interface ResponsesItem {
  type?: 'message' | 'function_call' | 'function_call_output' | 'reasoning'
  role?: 'system' | 'developer' | 'user' | 'assistant'
  content?: string | ResponsesTextPart[]
  call_id?: string
  name?: string
  arguments?: string
  output?: string | ResponsesTextPart[]
  id?: string | null
}

export interface ResponsesTool {
  type: 'function'
  name: string
  description?: string | null
  parameters?: Record<string, unknown> | null
  strict?: boolean | null
}

export interface ResponsesFormat {
  type: 'text' | 'json_object' | 'json_schema'
  name?: string
  description?: string
  schema?: Record<string, unknown>
  strict?: boolean | null
}

export interface ResponsesBody extends BootstrapFields {
  model: string
  input: string | ResponsesItem[]
  instructions?: string | null
  max_output_tokens?: number | null
  temperature?: number | null
  top_p?: number | null
  stream?: boolean | null
  store?: boolean | null
  previous_response_id?: string | null
  tools?: ResponsesTool[] | null
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; name: string } | null
  parallel_tool_calls?: boolean | null
  text?: { format?: ResponsesFormat; verbosity?: string | null } | null
  structured_outputs?: Record<string, unknown> | null
  metadata?: Record<string, string> | null
  top_logprobs?: number | null
  include?: string[] | null
}
