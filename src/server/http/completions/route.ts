/** POST /v1/completions */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import { completionBody, type CompletionBody } from '../schemas.ts'
import { serveGeneration } from '../generation/serve.ts'
import type { GenerationOptions } from '../generation/options.ts'
import type { ResponseShape } from '../generation/shape.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { SpanserveError } from '../../../errors.ts'

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
    const echoOnly = body.max_tokens === 0
    if (echoOnly && body.echo !== true) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', 'max_tokens must be at least 1; 0 is taken only with echo: true (the prompt and its logprobs, nothing generated)', 'max_tokens')
    // max_tokens 0 with echo runs as 1 token, which is dropped (vLLM's way): the prefill that scores
    // the prompt is the one that samples a first token, so scheduler and worker see a plain request.
    const maxTokens = echoOnly ? 1 : (body.max_tokens ?? DEFAULT_MAX_TOKENS)
    // One prompt, or several (strings or token arrays): choices prompt-major, n per prompt.
    const prompts: (string | number[])[] = Array.isArray(body.prompt) && (typeof body.prompt[0] === 'string' || Array.isArray(body.prompt[0])) ? (body.prompt as (string | number[])[]) : [body.prompt as string | number[]]
    const inputs = prompts.map((prompt) => (typeof prompt === 'string' ? { text: prompt, inputIds: null, messages: null, maxTokens } : { text: null, inputIds: prompt, messages: null, maxTokens }))
    const options: GenerationOptions = {
      n: body.n ?? 1,
      bestOf: body.best_of ?? undefined,
      logprobs: body.logprobs != null ? { kind: 'completion', top: body.logprobs } : null,
      echo: body.echo === true,
      echoOnly,
    }
    await serveGeneration(request, reply, engine, info, body, inputs, shape, options)
  })
}
