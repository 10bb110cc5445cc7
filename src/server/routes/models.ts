/** GET /v1/models */
import type { FastifyInstance } from 'fastify'
import type { ServingInfo } from './generate.ts'

export function modelsRoute(app: FastifyInstance, info: ServingInfo, contextLength: number): void {
  const created = Math.floor(Date.now() / 1000)
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: info.modelName, object: 'model', created, owned_by: 'spanserve', max_model_len: contextLength }],
  }))
}
