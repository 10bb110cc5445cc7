/**
 * The stored responses' routes, as OpenAI's SDKs call them: GET /v1/responses/{id} (retrieve),
 * GET /v1/responses/{id}/input_items (inputItems.list) and DELETE /v1/responses/{id} (delete). An id
 * not kept (never stored, store: false, deleted, evicted) is a 404 naming response_id.
 */
import type { FastifyInstance } from 'fastify'
import { SpanserveError } from '../../../errors.ts'
import { inputItemsPage, type InputItemsQuery } from './input-items.ts'
import type { ResponseStore } from './store.ts'

interface IdParams {
  id: string
}

export async function storedResponseRoutes(app: FastifyInstance, store: ResponseStore): Promise<void> {
  app.get<{ Params: IdParams }>('/v1/responses/:id', { config: { auth: 'api' } }, async (request) => store.get(request.params.id).response)

  app.get<{ Params: IdParams; Querystring: InputItemsQuery }>('/v1/responses/:id/input_items', { config: { auth: 'api' } }, async (request) => {
    return inputItemsPage(store.get(request.params.id).inputItems, request.query)
  })

  // A DELETE's body means nothing; clients send none, `{}`, or an empty body labelled JSON, which the
  // app's JSON parser refuses. In this scope only, an empty body is no body; anything else must parse.
  await app.register(async (scope) => {
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
      const text = (body as string).trim()
      if (text === '') return done(null, undefined)
      try {
        done(null, JSON.parse(text))
      } catch {
        done(new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'request body is not valid JSON'), undefined)
      }
    })
    scope.delete<{ Params: IdParams }>('/v1/responses/:id', { config: { auth: 'api' } }, async (request) => {
      const { id } = request.params
      store.delete(id)
      return { id, object: 'response', deleted: true }
    })
  })
}
