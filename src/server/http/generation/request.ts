/**
 * One sequence of a generation request as the engine takes it (a GenerateReqInput): its prompt and
 * its sampling from the request's params (params.ts), its client identified (../client-id.ts), its
 * trace started, and the response headers (x-request-id, the trace's traceparent) set.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Context } from '@opentelemetry/api'
import type { GenerateReqInput } from '../../../ipc/messages.ts'
import type { ServingInfo } from '../serving-info.ts'
import { clientId } from '../../../http/client-id.ts'
import { startRequestTrace } from '../../engine-client/request-trace.ts'
import type { GenerateInput } from './ask.ts'
import type { GenerationParams } from './params.ts'
import type { ChunkBase, ResponseShape } from './shape.ts'

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

/** Sequence `seq` of its prompt (its sampling: params.sampling[seq]). */
export function buildRequest(
  request: FastifyRequest,
  info: ServingInfo,
  params: GenerationParams,
  input: GenerateInput,
  seq: number,
  shape: Pick<ResponseShape, 'idPrefix' | 'operation'>,
): BuiltRequest {
  const rid = newRid()
  const client = clientId(request, info.apiKeyConfigured === true)
  const base: ChunkBase = { id: `${shape.idPrefix}-${rid}`, created: Math.floor(Date.now() / 1000), model: info.modelName }
  const otel = (request as unknown as { opentelemetry?: () => { context: Context | null; instrumented?: boolean } }).opentelemetry?.()
  const { carrier, traceparent } = startRequestTrace({
    rid,
    httpContext: otel && otel.instrumented !== false ? (otel.context ?? undefined) : undefined,
    operation: shape.operation,
    model: info.modelName,
    maxTokens: params.maxTokens,
    // The request's sampling as asked (its seed as sent, not a later sequence's seed + j).
    sampling: params.sampling[0]!,
    prompt: input.text ?? (input.messages ? JSON.stringify(input.messages) : JSON.stringify(input.inputIds)),
    toolNames: input.tools?.map((t) => t.function.name),
    client,
  })
  const req: GenerateReqInput = {
    type: 'generate',
    rid,
    trace: carrier,
    ...input,
    maxTokens: params.maxTokens,
    sampling: params.sampling[seq]!,
    stop: [...params.stop],
    ignoreEos: params.ignoreEos,
    ...(params.skipSpecialTokens ? {} : { skipSpecialTokens: false }),
    ...(params.bootstrap ? { bootstrap: { ...params.bootstrap } } : {}),
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
