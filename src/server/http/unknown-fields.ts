/**
 * Fields a request body carries that its schema does not declare: ignored, as vLLM ignores them,
 * and named in one warning line per request so that a misspelt option does not pass unnoticed.
 *
 * The body is the client's: the walk keeps its own stack (no recursion on the body's depth or
 * width) and stops at MAX_NAMES names, so a body of 130,000 unknown fields costs one short line.
 */
import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'

interface SchemaNode {
  type?: string | readonly string[]
  properties?: Record<string, SchemaNode>
  items?: SchemaNode
  anyOf?: readonly SchemaNode[]
  allOf?: readonly (SchemaNode & { then?: SchemaNode })[]
  additionalProperties?: boolean | SchemaNode
}

/** Names past this many are not collected: the warning says there were more. */
export const MAX_NAMES = 32

export interface UnknownFields {
  /** Dotted paths (`messages.0.extra`), at most MAX_NAMES of them. */
  names: string[]
  /** True when the walk stopped at MAX_NAMES: there may be more. */
  more: boolean
}

/** The object fields in `value` that `schema` does not declare, in document order. */
export function unknownFields(value: unknown, schema: SchemaNode, max = MAX_NAMES): UnknownFields {
  const names: string[] = []
  // A value to look into, or an unknown field's name; pushed in reverse so they pop in document order.
  type Entry = { value: unknown; schema: SchemaNode; path: string } | { name: string }
  const stack: Entry[] = [{ value, schema, path: '' }]
  while (stack.length > 0) {
    const entry = stack.pop()!
    if ('name' in entry) {
      if (names.length === max) return { names, more: true }
      names.push(entry.name)
      continue
    }
    const { value: v, schema: s, path } = entry
    const shapes = alternatives(s)
    if (Array.isArray(v)) {
      const items = shapes.find((n) => n.items)?.items
      if (items) for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], schema: items, path: `${path}${i}.` })
      continue
    }
    if (v === null || typeof v !== 'object') continue
    // Of alternatives, the first that declares object properties describes the object.
    const node = shapes.find((n) => n.properties)
    if (!node?.properties || node.additionalProperties !== undefined) continue
    const keys = Object.keys(v)
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!
      const child = Object.hasOwn(node.properties, key) ? node.properties[key] : undefined
      stack.push(child === undefined ? { name: path + key } : { value: (v as Record<string, unknown>)[key], schema: child, path: `${path}${key}.` })
    }
  }
  return { names, more: false }
}

/**
 * The schema itself and, depth first, every alternative of its anyOf. Schemas are ours (finite and
 * shallow), so this recursion is on the schema, never on the body.
 */
function alternatives(schema: SchemaNode): SchemaNode[] {
  return [schema, ...(schema.anyOf ?? []).flatMap(alternatives)]
}

/** A preHandler that logs the body's unknown fields once, when there are any. */
export function warnUnknownFields(schema: object): preHandlerAsyncHookHandler {
  return async (request: FastifyRequest) => {
    const { names, more } = unknownFields(request.body, schema as SchemaNode)
    if (names.length === 0) return
    const list = names.join(', ') + (more ? ', … (more not listed)' : '')
    request.log.warn({ ignored_fields: names, ignored_fields_more: more, url: request.url.split('?')[0] }, `request fields ignored: ${list}`)
  }
}
