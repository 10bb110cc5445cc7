/** POST /v1/chat/completions */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import { chatBody, type ChatBody } from '../schemas.ts'
import { respond } from '../generation/responder.ts'
import type { GenerateInput } from '../generation/ask.ts'
import type { ResponseShape } from '../generation/shape.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { chatParams } from './params.ts'
import { chatMessages, chatTools } from './request.ts'
import { assistantShape } from './tool-shape.ts'
import { constrainedCallParser, toolCallParser } from '../tool-calls/parsers.ts'
import { reasoningParser } from '../reasoning/parsers.ts'

const shape: ResponseShape = {
  idPrefix: 'chatcmpl',
  operation: 'chat',
  chunk: (base, text, finishReason, first) => ({
    ...base,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: first ? { role: 'assistant', content: text } : finishReason !== null && text === '' ? {} : { content: text }, logprobs: null, finish_reason: finishReason }],
  }),
  whole: (base, text, finishReason, usage) => ({
    ...base,
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finishReason }],
    usage,
  }),
  usageChunk: (base, usage) => ({ ...base, object: 'chat.completion.chunk', choices: [], usage }),
}

export const chatRoute: FastifyPluginAsync<RoutesOptions> = async (app, { engine, info }) => {
  const parser = toolCallParser(info.toolCallParser ?? 'hermes')
  const reasoning = reasoningParser(info.reasoningParser ?? 'none')
  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(chatBody) }, async (request, reply) => {
    const body = request.body
    const messages = chatMessages(body.messages)
    const { tools: listed, mode } = chatTools(body, parser !== null)
    // A forced call (required, named) is written by the grammar in Hermes blocks from the first token:
    // no room for thinking, and the blocks are read as Hermes whatever the model's own format.
    const constrained = mode.kind === 'required' || mode.kind === 'named'
    const tools = mode.kind === 'none' || parser === null ? null : constrained ? constrainedCallParser() : parser
    const readers = { reasoning: constrained ? null : reasoning, tools, parallel: body.parallel_tool_calls !== false }
    const requestShape = readers.reasoning === null && readers.tools === null ? shape : assistantShape(shape, readers)
    const input: GenerateInput = { text: null, inputIds: null, messages, tools: listed }
    // A parser that reads special tokens has the tokenizer keep them.
    const params = await chatParams(body, input, info, tools?.keepsSpecialTokens === true)
    await respond(request, reply, engine, info, params, [input], requestShape)
  })
}
