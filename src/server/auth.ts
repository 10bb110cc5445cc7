/** --api-key: /v1/* needs `Authorization: Bearer KEY`; keys are compared in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { SpanserveError } from '../errors.ts'

// Hashing first gives equal-length buffers, so the comparison leaks neither content nor length.
const digest = (s: string) => createHash('sha256').update(s).digest()

export function requireApiKey(app: FastifyInstance, key: string): void {
  const expected = digest(key)
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/')) return
    const header = request.headers.authorization ?? ''
    const given = header.startsWith('Bearer ') ? header.slice(7) : ''
    if (!timingSafeEqual(digest(given), expected)) {
      throw new SpanserveError('SPANSERVE_ERR_UNAUTHORIZED', 'Incorrect API key provided; send it as "Authorization: Bearer KEY"')
    }
  })
}
