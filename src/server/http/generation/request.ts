/**
 * A validated body into a GenerateReqInput: the model checked, sampling mapped (src/sampling/), its
 * client identified (../client-id.ts), the request's trace started, and the response headers
 * (x-request-id, the trace's traceparent) set.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Context } from '@opentelemetry/api'
import type { ChatMessage, ChatTool, GenerateReqInput } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import { samplingFrom } from '../../../sampling/body.ts'
import type { OutputConstraint } from '../../../model/grammar/constraint.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import { clientId } from '../client-id.ts'
import { startRequestTrace } from '../../engine-client/request-trace.ts'
import type { ChunkBase, ResponseShape } from './shape.ts'

export interface GenerateInput {
  text: string | null
  inputIds: number[] | null
  messages: ChatMessage[] | null
  /** Tools for the chat template (chat only). */
  tools?: ChatTool[] | null
  maxTokens: number
}

export interface BuiltRequest {
  req: GenerateReqInput
  base: ChunkBase
  /** Headers every answer carries. */
  headers: Record<string, string>
  /** The request's trace, for exemplars and log lines (null when untraced). */
  traceIds: { traceId: string; spanId: string } | null
}

export function newRid(): string {
  return randomBytes(12).toString('hex')
}

export function stopsFrom(body: SamplingBody): string[] {
  if (body.stop == null) return []
  return typeof body.stop === 'string' ? [body.stop] : body.stop
}

export function checkModel(body: SamplingBody, info: ServingInfo): void {
  if (body.model !== info.modelName) {
    throw new SpanserveError('SPANSERVE_ERR_MODEL_NOT_FOUND', `The model \`${body.model}\` does not exist; this server serves \`${info.modelName}\``, 'model')
  }
}

/** Throws (a 4xx for the error handler) on a body the model or the sampling fields refuse. */
export function buildRequest(request: FastifyRequest, info: ServingInfo, body: SamplingBody, input: GenerateInput, shape: Pick<ResponseShape, 'idPrefix' | 'operation'>, constraint: OutputConstraint | null = null): BuiltRequest {
  checkModel(body, info)
  const rid = newRid()
  const client = clientId(request, info.apiKeyConfigured === true)
  const sampling = samplingFrom(body, info.defaults, input.maxTokens)
  if (constraint) sampling.constraint = constraint
  const base: ChunkBase = { id: `${shape.idPrefix}-${rid}`, created: Math.floor(Date.now() / 1000), model: info.modelName }
  const otel = (request as unknown as { opentelemetry?: () => { context: Context | null; instrumented?: boolean } }).opentelemetry?.()
  const { carrier, traceparent } = startRequestTrace({
    rid,
    httpContext: otel && otel.instrumented !== false ? (otel.context ?? undefined) : undefined,
    operation: shape.operation,
    model: info.modelName,
    maxTokens: input.maxTokens,
    sampling,
    prompt: input.text ?? (input.messages ? JSON.stringify(input.messages) : JSON.stringify(input.inputIds)),
    toolNames: input.tools?.map((t) => t.function.name),
    client,
  })
  const req: GenerateReqInput = {
    type: 'generate',
    rid,
    trace: carrier,
    ...input,
    sampling,
    stop: stopsFrom(body),
    ignoreEos: body.ignore_eos === true,
    arrivalMs: Date.now(),
    client,
  }
  const requestId = (request.headers['x-request-id'] as string | undefined) ?? rid
  const headers: Record<string, string> = { 'x-request-id': /^[\w.:-]{1,128}$/.test(requestId) ? requestId : rid }
  // The caller can find its trace: the request root's traceparent comes back on every response.
  if (traceparent) headers.traceparent = traceparent
  const traceIds = traceparent ? { traceId: traceparent.split('-')[1]!, spanId: traceparent.split('-')[2]! } : null
  return { req, base, headers, traceIds }
}
