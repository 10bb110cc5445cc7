/** GET /v1/models */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'

export const modelsRoute: FastifyPluginAsync<RoutesOptions> = async (app, { info, contextLength }) => {
  const created = Math.floor(Date.now() / 1000)
  app.get('/v1/models', { config: { auth: 'api' } }, async () => ({
    object: 'list',
    data: [{ id: info.modelName, object: 'model', created, owned_by: 'spanserve', max_model_len: contextLength }],
  }))
}
