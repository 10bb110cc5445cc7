/** POST /v1/completions */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import { completionBody, type CompletionBody } from '../schemas.ts'
import { respond } from '../generation/responder.ts'
import type { ResponseShape } from '../generation/shape.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { completionInputs, completionParams } from './params.ts'

const shape: ResponseShape = {
  idPrefix: 'cmpl',
  operation: 'text_completion',
  chunk: (base, text, finishReason) => ({ ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }] }),
  whole: (base, text, finishReason, usage) => ({ ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }], usage }),
  usageChunk: (base, usage) => ({ ...base, object: 'text_completion', choices: [], usage }),
}

export const completionsRoute: FastifyPluginAsync<RoutesOptions> = async (app, { engine, info }) => {
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(completionBody) }, async (request, reply) => {
    const inputs = completionInputs(request.body)
    const params = await completionParams(request.body, inputs, info)
    await respond(request, reply, engine, info, params, inputs, shape)
  })
}
