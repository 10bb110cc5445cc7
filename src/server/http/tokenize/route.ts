/**
 * vLLM's POST /tokenize and POST /detokenize: a prompt (or chat messages, rendered by the chat
 * template with their tools) to token ids, and token ids back to text. The tokenizer process answers.
 */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import { SpanserveError } from '../../../errors.ts'
import { chatBody, type ChatBodyMessage, type Tool } from '../schemas.ts'
import { chatMessages } from '../chat/request.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { newRid } from '../generation/request.ts'

export const tokenizeBody = {
  type: 'object',
  properties: {
    model: { type: ['string', 'null'], maxLength: 256 },
    prompt: { type: 'string' },
    messages: chatBody.properties.messages,
    tools: chatBody.properties.tools,
    add_special_tokens: { type: ['boolean', 'null'] },
    add_generation_prompt: { type: ['boolean', 'null'] },
    return_token_strs: { type: ['boolean', 'null'] },
  },
} as const

export const detokenizeBody = {
  type: 'object',
  required: ['tokens'],
  properties: {
    model: { type: ['string', 'null'], maxLength: 256 },
    tokens: { type: 'array', maxItems: 1_000_000, items: { type: 'integer' } },
  },
} as const

interface TokenizeBody {
  model?: string | null
  prompt?: string
  messages?: ChatBodyMessage[]
  tools?: Tool[] | null
  add_special_tokens?: boolean | null
  add_generation_prompt?: boolean | null
  return_token_strs?: boolean | null
}

function checkModel(model: string | null | undefined, served: string): void {
  if (model != null && model !== served) throw new SpanserveError('SPANSERVE_ERR_MODEL_NOT_FOUND', `The model \`${model}\` does not exist; this server serves \`${served}\``, 'model')
}

export const tokenizeRoute: FastifyPluginAsync<RoutesOptions> = async (app, { engine, info, contextLength }) => {
  app.post<{ Body: TokenizeBody }>('/tokenize', { schema: { body: tokenizeBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(tokenizeBody) }, async (request) => {
    const body = request.body
    checkModel(body.model, info.modelName)
    if ((body.prompt === undefined) === (body.messages === undefined)) {
      throw new SpanserveError('SPANSERVE_ERR_VALIDATION', 'give either prompt or messages', body.prompt === undefined ? 'prompt' : 'messages')
    }
    const isChat = body.messages !== undefined
    const tools =
      body.tools && body.tools.length > 0
        ? body.tools.map((t) => ({ type: 'function' as const, function: { name: t.function.name, description: t.function.description ?? null, parameters: t.function.parameters ?? null } }))
        : null
    const out = await engine.tokenize({
      type: 'tokenize',
      rid: newRid(),
      text: isChat ? null : body.prompt!,
      messages: isChat ? chatMessages(body.messages!) : null,
      tools: isChat ? tools : null,
      tokens: null,
      // vLLM's defaults: special tokens for a prompt, none for a rendered chat (the template has them).
      addSpecialTokens: body.add_special_tokens ?? !isChat,
      addGenerationPrompt: body.add_generation_prompt ?? true,
      tokenStrs: body.return_token_strs === true,
    })
    return { count: out.tokens.length, max_model_len: contextLength, tokens: out.tokens, token_strs: out.tokenStrs }
  })

  app.post<{ Body: { model?: string | null; tokens: number[] } }>(
    '/detokenize',
    { schema: { body: detokenizeBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(detokenizeBody) },
    async (request) => {
      checkModel(request.body.model, info.modelName)
      const out = await engine.tokenize({
        type: 'tokenize',
        rid: newRid(),
        text: null,
        messages: null,
        tools: null,
        tokens: request.body.tokens,
        addSpecialTokens: false,
        addGenerationPrompt: false,
        tokenStrs: false,
      })
      return { prompt: out.text ?? '' }
    },
  )
}
