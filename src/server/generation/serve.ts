/**
 * What completions and chat share: a validated body built into a request (request.ts), run through
 * the engine (run.ts), and answered as a stream (stream-responder.ts) or whole (whole-responder.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Engine } from '../engine.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import { buildRequest, type GenerateInput } from './request.ts'
import { outputConstraint, type ConstraintRequest } from '../../model/grammar/request.ts'
import { GenerationRun } from './run.ts'
import type { ResponseShape } from './shape.ts'
import { respondStreamed } from './stream-responder.ts'
import { respondWhole } from './whole-responder.ts'

/** Run one generation request through the engine and answer it, streamed or whole. */
export async function serveGeneration(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: Engine,
  info: ServingInfo,
  body: SamplingBody,
  input: GenerateInput,
  shape: ResponseShape,
): Promise<void> {
  const startMs = performance.now()
  // Structured output: a constraint that does not compile is a 400 before anything is queued.
  const constraint = await outputConstraint(body as ConstraintRequest)
  const built = buildRequest(request, info, body, input, shape, constraint)
  const run = new GenerationRun(request, reply, engine, info, built, startMs)
  if (body.stream) await respondStreamed(run, shape, body.stream_options)
  else await respondWhole(run, shape)
}
