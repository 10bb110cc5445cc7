/**
 * The output constraint a request asks for, from OpenAI's and vLLM's fields: `response_format`
 * (json_object, json_schema), vLLM's `guided_json` / `guided_regex` / `guided_choice` /
 * `guided_grammar` and their successor `structured_outputs`, and `tool_choice` "required" or a
 * named function. At most one may be set; the field that set it is `param` in any error about it.
 */
import { SpanserveError } from '../../../errors.ts'
import { structuralTagText } from './structural-tag-schema.ts'
import { enforceableSchemaText } from './schema-rewrite.ts'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../../json-depth.ts'
import type { OutputConstraint, RequestedConstraint } from '../../../structured-output/constraint.ts'

export type { RequestedConstraint } from '../../../structured-output/constraint.ts'

/**
 * The body schemas of the constraint fields, for the route schemas to spread in (chat and
 * completions alike, as vLLM takes them on both). The types are checked here; what a schema cannot
 * say (one constraint only) by requestedConstraint; whether it compiles, by the worker's grammar threads.
 */
export const constraintFieldSchemas = {
  response_format: {
    anyOf: [
      { type: 'null' },
      {
        type: 'object',
        required: ['type'],
        properties: {
          type: { enum: ['text', 'json_object', 'json_schema'] },
          json_schema: {
            type: 'object',
            properties: {
              name: { type: 'string', maxLength: 256 },
              description: { type: ['string', 'null'] },
              // A JSON Schema, as the user wrote it: its keys are not request fields.
              schema: { type: ['object', 'boolean'] },
              strict: { type: ['boolean', 'null'] },
            },
          },
        },
      },
    ],
  },
  guided_json: { anyOf: [{ type: 'string' }, { type: ['object', 'boolean'] }, { type: 'null' }] },
  guided_regex: { type: ['string', 'null'] },
  guided_choice: { anyOf: [{ type: 'array', maxItems: 4096, items: { type: 'string' } }, { type: 'null' }] },
  guided_grammar: { type: ['string', 'null'] },
  structured_outputs: {
    anyOf: [
      { type: 'null' },
      {
        type: 'object',
        properties: {
          json: { anyOf: [{ type: 'string' }, { type: ['object', 'boolean'] }, { type: 'null' }] },
          regex: { type: ['string', 'null'] },
          choice: { anyOf: [{ type: 'array', maxItems: 4096, items: { type: 'string' } }, { type: 'null' }] },
          grammar: { type: ['string', 'null'] },
          json_object: { type: ['boolean', 'null'] },
          structural_tag: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'null' }] },
        },
      },
    ],
  },
} as const

export interface ConstraintRequest {
  response_format?: unknown
  guided_json?: unknown
  guided_regex?: unknown
  guided_choice?: unknown
  guided_grammar?: unknown
  structured_outputs?: unknown
  tools?: unknown
  tool_choice?: unknown
  parallel_tool_calls?: unknown
}

type Obj = Record<string, unknown>

function bad(param: string, message: string): SpanserveError {
  return new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', message, param)
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A JSON Schema given as an object or as JSON text, as JSON text. */
function schemaText(v: unknown, param: string): string {
  if (typeof v === 'string') {
    // Text gets the body's depth bound too: the engine's schema reader recurses on it.
    if (nestsDeeperThan(v)) throw bad(param, `${param} nests more than ${MAX_JSON_DEPTH} deep`)
    let parsed: unknown
    try {
      parsed = JSON.parse(v)
    } catch (err) {
      throw bad(param, `${param} is not valid JSON: ${(err as Error).message}`)
    }
    return enforceableSchemaText(parsed, param)
  }
  // Rewritten into what xgrammar enforces exactly, or refused naming the keyword (schema-rewrite.ts).
  if (isObj(v) || typeof v === 'boolean') return enforceableSchemaText(v, param)
  throw bad(param, `${param} must be a JSON Schema (an object)`)
}

function str(v: unknown, param: string): string {
  if (typeof v !== 'string' || v.length === 0) throw bad(param, `${param} must be a non-empty string`)
  return v
}

function choices(v: unknown, param: string): string[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((c) => typeof c === 'string' && c.length > 0)) {
    throw bad(param, `${param} must be a non-empty array of non-empty strings`)
  }
  return v as string[]
}

function fromResponseFormat(rf: unknown): RequestedConstraint | null {
  if (rf === undefined || rf === null) return null
  if (!isObj(rf)) throw bad('response_format', 'response_format must be an object')
  switch (rf.type) {
    case 'text':
      return null
    case 'json_object':
      return { constraint: { type: 'json_object' }, param: 'response_format' }
    case 'json_schema': {
      const js = rf.json_schema
      if (!isObj(js)) throw bad('response_format.json_schema', 'response_format.json_schema must be an object with a schema')
      // OpenAI's SDKs send the schema under `schema`; some clients under `json_schema.json_schema`.
      const schema = js.schema ?? js.json_schema
      if (schema === undefined) throw bad('response_format.json_schema.schema', 'response_format.json_schema.schema is required')
      return { constraint: { type: 'json_schema', schema: schemaText(schema, 'response_format.json_schema.schema') }, param: 'response_format.json_schema.schema' }
    }
    default:
      throw bad('response_format.type', `response_format.type must be "text", "json_object" or "json_schema", got ${JSON.stringify(rf.type)}`)
  }
}

/** vLLM's structured_outputs (and its older guided_* fields): exactly one kind set. */
function fromVllm(body: ConstraintRequest): RequestedConstraint[] {
  const found: RequestedConstraint[] = []
  const so = body.structured_outputs
  if (so !== undefined && so !== null) {
    if (!isObj(so)) throw bad('structured_outputs', 'structured_outputs must be an object')
    if (so.json !== undefined && so.json !== null) found.push({ constraint: { type: 'json_schema', schema: schemaText(so.json, 'structured_outputs.json') }, param: 'structured_outputs.json' })
    if (so.regex !== undefined && so.regex !== null) found.push({ constraint: { type: 'regex', pattern: str(so.regex, 'structured_outputs.regex') }, param: 'structured_outputs.regex' })
    if (so.choice !== undefined && so.choice !== null) found.push({ constraint: { type: 'choice', choices: choices(so.choice, 'structured_outputs.choice') }, param: 'structured_outputs.choice' })
    if (so.grammar !== undefined && so.grammar !== null) found.push({ constraint: { type: 'grammar', grammar: str(so.grammar, 'structured_outputs.grammar') }, param: 'structured_outputs.grammar' })
    if (so.json_object === true) found.push({ constraint: { type: 'json_object' }, param: 'structured_outputs.json_object' })
    if (so.structural_tag !== undefined && so.structural_tag !== null) {
      found.push({ constraint: { type: 'structural_tag', tag: structuralTagText(so.structural_tag, 'structured_outputs.structural_tag') }, param: 'structured_outputs.structural_tag' })
    }
  }
  if (body.guided_json !== undefined && body.guided_json !== null) found.push({ constraint: { type: 'json_schema', schema: schemaText(body.guided_json, 'guided_json') }, param: 'guided_json' })
  if (body.guided_regex !== undefined && body.guided_regex !== null) found.push({ constraint: { type: 'regex', pattern: str(body.guided_regex, 'guided_regex') }, param: 'guided_regex' })
  if (body.guided_choice !== undefined && body.guided_choice !== null) found.push({ constraint: { type: 'choice', choices: choices(body.guided_choice, 'guided_choice') }, param: 'guided_choice' })
  if (body.guided_grammar !== undefined && body.guided_grammar !== null) found.push({ constraint: { type: 'grammar', grammar: str(body.guided_grammar, 'guided_grammar') }, param: 'guided_grammar' })
  return found
}

interface ToolLike {
  type?: unknown
  function?: { name?: unknown; parameters?: unknown }
}

/** tool_choice "required" or a named function: the calls constrained; "auto" and "none" constrain nothing. */
function fromToolChoice(body: ConstraintRequest): RequestedConstraint | null {
  const choice = body.tool_choice
  if (choice !== 'required' && !isObj(choice)) return null
  const tools = (Array.isArray(body.tools) ? body.tools : []) as ToolLike[]
  if (tools.length === 0) throw bad('tool_choice', 'tool_choice "required" or a named function needs tools')
  let chosen = tools
  if (isObj(choice)) {
    const name = (choice.function as { name?: unknown } | undefined)?.name
    chosen = tools.filter((t) => t.function?.name === name)
    if (chosen.length === 0) throw bad('tool_choice', `tool_choice names function ${JSON.stringify(name)}, which is not in tools`)
  }
  const functions = chosen.map((t, i) => {
    const params = t.function?.parameters
    const schema = params === undefined || params === null ? '{"type":"object"}' : schemaText(params, `tools[${i}].function.parameters`)
    return { name: String(t.function?.name), parameters: schema }
  })
  // One call unless the request asks for several outright: a model free to go on writing calls
  // may never stop (a weak one does not), while one call always ends the output.
  return {
    constraint: { type: 'tool_calls', calls: { functions, single: isObj(choice) || body.parallel_tool_calls !== true, format: 'hermes' } },
    param: isObj(choice) ? 'tool_choice' : 'tools',
  }
}

/** The one constraint the request sets, or null; a 400 naming the field when a field is malformed or two are set. */
export function requestedConstraint(body: ConstraintRequest): RequestedConstraint | null {
  const found: RequestedConstraint[] = []
  const tool = fromToolChoice(body)
  if (tool) found.push(tool)
  const rf = fromResponseFormat(body.response_format)
  if (rf) found.push(rf)
  found.push(...fromVllm(body))
  if (found.length > 1) {
    throw bad(found[1]!.param, `only one output constraint per request: ${found[0]!.param} and ${found[1]!.param} are both set`)
  }
  return found[0] ?? null
}

/**
 * The request's output constraint, with the field it came from: null when it asks for none; a 400
 * naming the field when a field is malformed or two are set. Nothing is compiled here, on the
 * server's event loop: the worker compiles it in a grammar thread under a time budget
 * (src/structured-output/pool.ts), and a constraint the engine refuses comes back as a 400 naming the field.
 */
export async function outputConstraint(body: ConstraintRequest): Promise<OutputConstraint | null> {
  const requested = requestedConstraint(body)
  if (requested === null) return null
  return { ...requested.constraint, param: requested.param }
}
