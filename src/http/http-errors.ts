/** The one place where any error becomes an HTTP status and OpenAI's error body. */
import type { FastifyError, FastifyReply } from 'fastify'
import { SpanserveError, errorBody } from '../errors.ts'

const FASTIFY_CODES: Record<string, SpanserveError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'SPANSERVE_ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'SPANSERVE_ERR_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'SPANSERVE_ERR_INVALID_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'SPANSERVE_ERR_INVALID_REQUEST',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'SPANSERVE_ERR_INVALID_REQUEST',
  FST_ERR_CTP_EMPTY_TYPE: 'SPANSERVE_ERR_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'SPANSERVE_ERR_MEDIA_TYPE',
  FST_ERR_BAD_URL: 'SPANSERVE_ERR_INVALID_REQUEST',
}

export function toSpanserveError(err: unknown): SpanserveError {
  if (err instanceof SpanserveError) return err
  const e = err as Partial<FastifyError> & { validation?: { instancePath?: string; message?: string }[] }
  if (e.validation && e.validation.length > 0) {
    const v = e.validation[0]! as { instancePath?: string; keyword?: string; params?: { additionalProperty?: string } }
    const path = v.instancePath ? v.instancePath.replace(/^\//, '').replace(/\//g, '.') : null
    if (v.keyword === 'additionalProperty' || v.keyword === 'additionalProperties') {
      const name = v.params?.additionalProperty ?? '?'
      return new SpanserveError('SPANSERVE_ERR_VALIDATION', `Unrecognized request argument supplied: ${name}`, path ? `${path}.${name}` : name)
    }
    return new SpanserveError('SPANSERVE_ERR_VALIDATION', e.message ?? 'invalid request body', path)
  }
  if (typeof e.code === 'string' && FASTIFY_CODES[e.code]) return new SpanserveError(FASTIFY_CODES[e.code]!, e.message)
  if (err instanceof SyntaxError) return new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `request body is not valid JSON: ${err.message}`)
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new SpanserveError(e.statusCode === 413 ? 'SPANSERVE_ERR_BODY_TOO_LARGE' : 'SPANSERVE_ERR_INVALID_REQUEST', e.message)
  }
  return new SpanserveError('SPANSERVE_ERR_INTERNAL')
}

/** Headers an error answer carries: Retry-After when trying again later can help. */
export function errorHeaders(err: SpanserveError): Record<string, string> {
  return err.status === 429 || err.status === 503 ? { 'retry-after': '1' } : {}
}

/** Answer with the error as a plain HTTP response: its status, OpenAI's body, `headers` and its own. */
export function sendError(reply: FastifyReply, headers: Record<string, string>, err: SpanserveError): void {
  void reply
    .code(err.status)
    .headers({ ...headers, ...errorHeaders(err) })
    .send(errorBody(err))
}
