/** GET /v1/models/{model}: one model's card, as the openai client's models.retrieve reads it. */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import { SpanserveError } from '../../../errors.ts'

export const modelRetrieveRoute: FastifyPluginAsync<RoutesOptions> = async (app, { info, contextLength }) => {
  // When this server process started: the same on every call, like the list's card.
  const created = Math.floor((Date.now() - process.uptime() * 1000) / 1000)
  // A wildcard: served model names may hold a slash (Qwen/Qwen3-0.6B), sent raw or as %2F.
  app.get<{ Params: { '*': string } }>('/v1/models/*', { config: { auth: 'api' } }, async (request) => {
    const id = request.params['*']
    if (id !== info.modelName) {
      throw new SpanserveError('SPANSERVE_ERR_MODEL_NOT_FOUND', `The model \`${id}\` does not exist; this server serves \`${info.modelName}\``, 'model')
    }
    return { id, object: 'model', created, owned_by: 'spanserve', max_model_len: contextLength }
  })
}
