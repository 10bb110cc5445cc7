/**
 * vLLM's `structured_outputs.structural_tag`, checked and normalised before xgrammar sees it.
 * xgrammar reports a malformed tag by throwing a bare C++ exception (a number) out of WebAssembly,
 * which says nothing; so the tag's shape is checked here against xgrammar's structural tag format
 * (@mlc-ai/web-xgrammar lib/structural_tag.d.ts), and a bad one is a 400 naming the part at fault.
 *
 * Two forms are taken, as vLLM takes them (its xgrammar backend):
 * - `{"type": "structural_tag", "format": {...}}` (type optional), xgrammar's own;
 * - the legacy `{"type": "structural_tag", "structures": [{"begin", "schema", "end"}], "triggers": [...]}`,
 *   rewritten into the first as xgrammar's own structuralTagFromLegacy does (triggered tags whose
 *   content is each structure's JSON schema).
 * Either may come as an object or as JSON text; the result is the first form, as JSON text.
 */
import { Ajv, type ErrorObject } from 'ajv'
import { SpanserveError } from '../../../errors.ts'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../../json-depth.ts'

const str = { type: 'string' } as const
const nonEmpty = { type: 'string', minLength: 1 } as const
const jsonSchemaValue = { type: ['object', 'boolean'] } as const

/** One format per `type`, each with the fields xgrammar reads. */
const FORMATS: Record<string, { required: string[]; properties: Record<string, unknown> }> = {
  any_text: { required: [], properties: {} },
  const_string: { required: ['value'], properties: { value: nonEmpty } },
  json_schema: { required: ['json_schema'], properties: { json_schema: jsonSchemaValue } },
  qwen_xml_parameter: { required: ['json_schema'], properties: { json_schema: jsonSchemaValue } },
  grammar: { required: ['grammar'], properties: { grammar: nonEmpty } },
  regex: { required: ['pattern'], properties: { pattern: nonEmpty } },
  sequence: { required: ['elements'], properties: { elements: { type: 'array', minItems: 1, items: { $ref: '#/$defs/format' } } } },
  or: { required: ['elements'], properties: { elements: { type: 'array', minItems: 1, items: { $ref: '#/$defs/format' } } } },
  tag: { required: ['begin', 'content', 'end'], properties: { begin: str, content: { $ref: '#/$defs/format' }, end: str } },
  triggered_tags: {
    required: ['triggers', 'tags'],
    properties: {
      triggers: { type: 'array', minItems: 1, items: nonEmpty },
      tags: { type: 'array', minItems: 1, items: { $ref: '#/$defs/tag' } },
      at_least_one: { type: 'boolean' },
      stop_after_first: { type: 'boolean' },
    },
  },
  tags_with_separator: {
    required: ['tags', 'separator'],
    properties: {
      tags: { type: 'array', minItems: 1, items: { $ref: '#/$defs/tag' } },
      separator: str,
      at_least_one: { type: 'boolean' },
      stop_after_first: { type: 'boolean' },
    },
  },
}

const TYPES = Object.keys(FORMATS)

const format = {
  type: 'object',
  required: ['type'],
  properties: { type: { enum: TYPES } },
  // The type first, so that an unknown one is reported as such rather than as a missing field.
  allOf: TYPES.map((t) => ({ if: { properties: { type: { const: t } } }, then: { type: 'object', required: FORMATS[t]!.required, properties: FORMATS[t]!.properties } })),
}

const defs = {
  format,
  tag: { type: 'object', required: ['type', 'begin', 'content', 'end'], properties: { type: { const: 'tag' }, ...FORMATS.tag!.properties } },
}

/** xgrammar's form: a format under `format`. */
export const structuralTagSchema = {
  $defs: defs,
  type: 'object',
  required: ['format'],
  properties: { type: { const: 'structural_tag' }, format: { $ref: '#/$defs/format' } },
}

/** The legacy form vLLM still takes: structures (begin, JSON schema, end) and their triggers. */
export const legacyStructuralTagSchema = {
  type: 'object',
  required: ['structures', 'triggers'],
  properties: {
    type: { const: 'structural_tag' },
    structures: {
      type: 'array',
      minItems: 1,
      items: { type: 'object', required: ['begin', 'schema', 'end'], properties: { begin: nonEmpty, schema: jsonSchemaValue, end: str } },
    },
    triggers: { type: 'array', minItems: 1, items: nonEmpty },
  },
}

// verbose: an error keeps the value at fault, which the message quotes.
const ajv = new Ajv({ allErrors: false, strict: false, verbose: true })
const validateTag = ajv.compile(structuralTagSchema)
const validateLegacy = ajv.compile(legacyStructuralTagSchema)

function bad(param: string, message: string): SpanserveError {
  return new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', message, param)
}

/** The first schema error as `param.path: message`, as a person reads it. */
function describe(param: string, errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0]
  if (!e) return `${param} is not a valid structural tag`
  const at = param + e.instancePath.replace(/\//g, '.')
  if (e.keyword === 'enum' && e.instancePath.endsWith('/type')) return `${at} must be one of ${TYPES.join(', ')}, got ${quote(e.data)}`
  if (e.keyword === 'required') return `${at} needs the field ${(e.params as { missingProperty: string }).missingProperty}`
  if (e.keyword === 'const') return `${at} must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`
  return `${at} ${e.message ?? 'is not valid'}`
}

/** A value quoted in a message, cut short: it is the client's. */
function quote(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v)
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}

/** Each tag of triggered tags must begin with exactly one of the triggers: xgrammar's rule. */
function checkTriggers(node: unknown, at: string, param: string): void {
  // Walked with its own stack: the tag is bounded in depth already, but no recursion is needed.
  const stack: { node: unknown; at: string }[] = [{ node, at }]
  while (stack.length > 0) {
    const { node: n, at: path } = stack.pop()!
    if (n === null || typeof n !== 'object') continue
    const f = n as { type?: unknown; elements?: unknown[]; content?: unknown; tags?: { begin: string; content: unknown }[]; triggers?: string[] }
    if (f.type === 'triggered_tags' && f.tags && f.triggers) {
      for (const [i, tag] of f.tags.entries()) {
        const matched = f.triggers.filter((t) => tag.begin.startsWith(t)).length
        if (matched !== 1) throw bad(param, `${path}.tags.${i}.begin ${quote(tag.begin)} must start with exactly one of the triggers ${quote(f.triggers)}; it starts with ${matched}`)
      }
    }
    for (const [i, e] of (Array.isArray(f.elements) ? f.elements : []).entries()) stack.push({ node: e, at: `${path}.elements.${i}` })
    if (f.content !== undefined) stack.push({ node: f.content, at: `${path}.content` })
    for (const [i, t] of (Array.isArray(f.tags) ? f.tags : []).entries()) stack.push({ node: t.content, at: `${path}.tags.${i}.content` })
  }
}

/**
 * The request's structural tag as xgrammar's JSON text, its shape checked; a 400 naming `param`
 * (and the part at fault in the message) when it is not a structural tag either form allows.
 */
export function structuralTagText(value: unknown, param: string): string {
  let tag = value
  if (typeof value === 'string') {
    // Text gets the body's depth bound too: it is parsed here, past the body's check.
    if (nestsDeeperThan(value)) throw bad(param, `${param} nests more than ${MAX_JSON_DEPTH} deep`)
    try {
      tag = JSON.parse(value)
    } catch (err) {
      throw bad(param, `${param} is not valid JSON: ${(err as Error).message}`)
    }
  }
  if (tag === null || typeof tag !== 'object' || Array.isArray(tag)) throw bad(param, `${param} must be a structural tag object ({"type": "structural_tag", "format": {...}})`)
  const type = (tag as { type?: unknown }).type
  if (type !== undefined && type !== 'structural_tag') throw bad(param, `${param}.type must be "structural_tag", got ${quote(type)}`)
  if ('structures' in tag) {
    if (!validateLegacy(tag)) throw bad(param, describe(param, validateLegacy.errors))
    const legacy = tag as { structures: { begin: string; schema: unknown; end: string }[]; triggers: string[] }
    tag = {
      type: 'structural_tag',
      format: {
        type: 'triggered_tags',
        triggers: legacy.triggers,
        tags: legacy.structures.map((s) => ({ type: 'tag', begin: s.begin, content: { type: 'json_schema', json_schema: s.schema }, end: s.end })),
      },
    }
  } else if (!validateTag(tag)) {
    throw bad(param, describe(param, validateTag.errors))
  }
  const { format } = tag as { format: unknown }
  checkTriggers(format, `${param}.format`, param)
  return JSON.stringify({ type: 'structural_tag', format })
}
