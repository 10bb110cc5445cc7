/** POST /v1/completions */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from './options.ts'
import { completionBody, type CompletionBody } from '../schemas.ts'
import { serveGeneration } from '../generation/serve.ts'
import type { ResponseShape } from '../generation/shape.ts'
import { warnUnknownFields } from '../unknown-fields.ts'

const shape: ResponseShape = {
  idPrefix: 'cmpl',
  operation: 'text_completion',
  chunk: (base, text, finishReason) => ({ ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }] }),
  whole: (base, text, finishReason, usage) => ({ ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }], usage }),
  usageChunk: (base, usage) => ({ ...base, object: 'text_completion', choices: [], usage }),
}

/** OpenAI's legacy default for completions. */
const DEFAULT_MAX_TOKENS = 16

export const completionsRoute: FastifyPluginAsync<RoutesOptions> = async (app, { engine, info }) => {
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(completionBody) }, async (request, reply) => {
    const body = request.body
    let prompt = body.prompt
    if (Array.isArray(prompt) && (typeof prompt[0] === 'string' || Array.isArray(prompt[0]))) prompt = prompt[0] as string | number[]
    const input = typeof prompt === 'string'
      ? { text: prompt, inputIds: null, messages: null }
      : { text: null, inputIds: prompt as number[], messages: null }
    await serveGeneration(request, reply, engine, info, body, { ...input, maxTokens: body.max_tokens ?? DEFAULT_MAX_TOKENS }, shape)
  })
}
