/**
 * What completions and chat share: a validated body built into a request (request.ts), run through
 * the engine (run.ts), and answered as a stream (stream-responder.ts) or whole (whole-responder.ts).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { EngineClient } from '../../engine-client/engine-client.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import { buildRequest, type GenerateInput } from './request.ts'
import { serveChoices } from './choices.ts'
import { checkOptions, prepareSequence, sequencesPerPrompt, type GenerationOptions } from './options.ts'
import { outputConstraint, type ConstraintRequest } from '../../../model/grammar/request.ts'
import { GenerationRun } from './run.ts'
import type { ResponseShape } from './shape.ts'
import { respondStreamed } from './stream-responder.ts'
import { respondWhole } from './whole-responder.ts'

/**
 * Run one generation request through the engine and answer it, streamed or whole. Several inputs
 * (prompts), n > 1 or best_of make one sequence each (choices.ts).
 */
export async function serveGeneration(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: EngineClient,
  info: ServingInfo,
  body: SamplingBody,
  input: GenerateInput | readonly GenerateInput[],
  shape: ResponseShape,
  options: GenerationOptions = {},
): Promise<void> {
  const inputs = Array.isArray(input) ? input : [input as GenerateInput]
  checkOptions(options, inputs, body.stream === true, info)
  const startMs = performance.now()
  // Structured output: a constraint that does not compile is a 400 before anything is queued.
  const constraint = await outputConstraint(body as ConstraintRequest)
  if (inputs.length > 1 || sequencesPerPrompt(options) > 1) return serveChoices(request, reply, engine, info, body, inputs, shape, options, constraint)
  const built = buildRequest(request, info, body, inputs[0]!, shape, constraint)
  const run = new GenerationRun(request, reply, engine, info, built, startMs)
  prepareSequence(run, built, options, 0, 0, 1)
  if (body.stream) await respondStreamed(run, shape, body.stream_options)
  else await respondWhole(run, shape)
}
