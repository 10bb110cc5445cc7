/**
 * Fields a request body carries that its schema does not declare: ignored, as vLLM ignores them,
 * and named in one warning line per request so that a misspelt option does not pass unnoticed.
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

/** Dotted paths (`messages.0.extra`) of the object fields in `value` that `schema` does not declare. */
export function unknownFields(value: unknown, schema: SchemaNode, path = ''): string[] {
  const found: string[] = []
  const shapes = alternatives(schema)
  if (Array.isArray(value)) {
    const items = shapes.find((s) => s.items)?.items
    if (items) value.forEach((v, i) => found.push(...unknownFields(v, items, `${path}${i}.`)))
    return found
  }
  if (value === null || typeof value !== 'object') return found
  // Of alternatives, the first that declares object properties describes the object.
  const node = shapes.find((s) => s.properties)
  if (!node?.properties || node.additionalProperties !== undefined) return found
  for (const [key, v] of Object.entries(value)) {
    const child = Object.hasOwn(node.properties, key) ? node.properties[key] : undefined
    if (child === undefined) found.push(path + key)
    else found.push(...unknownFields(v, child, `${path}${key}.`))
  }
  return found
}

/** The schema itself and, depth first, every alternative of its anyOf. */
function alternatives(schema: SchemaNode): SchemaNode[] {
  return [schema, ...(schema.anyOf ?? []).flatMap(alternatives)]
}

/** A preHandler that logs the body's unknown fields once, when there are any. */
export function warnUnknownFields(schema: object): preHandlerAsyncHookHandler {
  return async (request: FastifyRequest) => {
    const ignored = unknownFields(request.body, schema as SchemaNode)
    if (ignored.length > 0) request.log.warn({ ignored_fields: ignored, url: request.url.split('?')[0] }, `request fields ignored: ${ignored.join(', ')}`)
  }
}
