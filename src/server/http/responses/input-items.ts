/**
 * GET /v1/responses/{id}/input_items: the request's input as OpenAI lists it (each item with an id,
 * a string input as one user message), paged with OpenAI's query: limit (1..100, default 20), order
 * (asc or desc, default desc: newest first) and after (an item id).
 */
import { randomBytes } from 'node:crypto'
import { SpanserveError } from '../../../errors.ts'
import type { ResponsesItem, ResponsesTextPart } from './schema.ts'

const itemId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`

type Item = Record<string, unknown>

function parts(content: string | ResponsesTextPart[] | undefined, kind: 'input_text' | 'output_text'): Item[] {
  const list = typeof content === 'string' ? [{ type: kind, text: content }] : (content ?? [])
  return list.map((p) => (p.type === 'output_text' ? { type: 'output_text', text: p.text, annotations: [] } : { type: 'input_text', text: p.text }))
}

/** The input items as stored: OpenAI's item shapes, ids kept when the client gave them. */
export function listedInputItems(input: string | ResponsesItem[]): Item[] {
  if (typeof input === 'string') return [{ id: itemId('msg'), type: 'message', role: 'user', status: 'completed', content: parts(input, 'input_text') }]
  return input.map((it): Item => {
    const given = it.id
    switch (it.type ?? 'message') {
      case 'function_call':
        return { id: given ?? itemId('fc'), type: 'function_call', call_id: it.call_id, name: it.name, arguments: it.arguments, status: 'completed' }
      case 'function_call_output':
        return {
          id: given ?? itemId('fco'),
          type: 'function_call_output',
          call_id: it.call_id,
          output: typeof it.output === 'string' ? it.output : parts(it.output, 'input_text'),
          status: 'completed',
        }
      case 'reasoning':
        return { id: given ?? itemId('rs'), type: 'reasoning', summary: [] }
      default:
        return { id: given ?? itemId('msg'), type: 'message', role: it.role, status: 'completed', content: parts(it.content, it.role === 'assistant' ? 'output_text' : 'input_text') }
    }
  })
}

export interface InputItemsQuery {
  limit?: string
  order?: string
  after?: string
}

/** One page of the list, in OpenAI's list shape; a bad query value is a 400 naming it. */
export function inputItemsPage(items: readonly Item[], q: InputItemsQuery): { object: 'list'; data: Item[]; first_id: string | null; last_id: string | null; has_more: boolean } {
  // Query strings are not coerced by the schema validator (coerceTypes is off): read by hand.
  const limit = q.limit === undefined ? 20 : /^\d{1,3}$/.test(q.limit) ? Number(q.limit) : NaN
  if (!(limit >= 1 && limit <= 100)) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `limit must be an integer from 1 to 100, got ${JSON.stringify(q.limit)}`, 'limit')
  const order = q.order ?? 'desc'
  if (order !== 'asc' && order !== 'desc') throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `order must be "asc" or "desc", got ${JSON.stringify(q.order)}`, 'order')
  const ordered = order === 'asc' ? items : [...items].reverse()
  let start = 0
  if (q.after !== undefined) {
    const i = ordered.findIndex((it) => it.id === q.after)
    if (i < 0) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `after: no input item with id '${q.after}' in this response`, 'after')
    start = i + 1
  }
  const data = ordered.slice(start, start + limit)
  return { object: 'list', data, first_id: (data[0]?.id as string | undefined) ?? null, last_id: (data.at(-1)?.id as string | undefined) ?? null, has_more: start + limit < ordered.length }
}
