/**
 * POST /v1/responses (OpenAI's Responses API, which vLLM serves too): run through the chat pipeline
 * (responses/input.ts), answered by the one responder (generation/responder.ts) in the Responses
 * API's shape (responses/shape.ts): a response object or Responses stream events
 * (responses/output.ts), with the output's logprobs when include asks; kept in a bounded in-memory
 * store (responses/store.ts) for previous_response_id and the GET / DELETE routes
 * (responses/stored-routes.ts).
 */
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import type { ChatMessage } from '../../../ipc/messages.ts'
import { chatTools } from '../chat/request.ts'
import { chatParams } from '../chat/params.ts'
import { respond } from '../generation/responder.ts'
import { constrainedCallParser, toolCallParser } from '../tool-calls/parsers.ts'
import { reasoningParser } from '../reasoning/parsers.ts'
import type { AssistantReaders } from '../tool-calls/assistant-output.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { chatEquivalent, inputMessages } from './input.ts'
import { responsesBody, type ResponsesBody } from './schema.ts'
import { responsesShape } from './shape.ts'
import { ResponseStore } from './store.ts'
import { storedResponseRoutes } from './stored-routes.ts'

export const responsesRoute: FastifyPluginAsync<RoutesOptions> = async (app, { engine, info }) => {
  const parser = toolCallParser(info.toolCallParser ?? 'hermes')
  const reasoning = reasoningParser(info.reasoningParser ?? 'none')
  const store = new ResponseStore()
  await storedResponseRoutes(app, store)

  app.post<{ Body: ResponsesBody }>('/v1/responses', { schema: { body: responsesBody }, config: { auth: 'api' }, preHandler: warnUnknownFields(responsesBody) }, async (request, reply) => {
    const startMs = performance.now()
    const body = request.body
    // Instructions are not carried over from a previous response (OpenAI's rule).
    const conversation = [...(body.previous_response_id ? store.conversation(body.previous_response_id) : []), ...inputMessages(body.input)]
    const messages: ChatMessage[] = body.instructions ? [{ role: 'system', content: body.instructions }, ...conversation] : conversation
    const chat = chatEquivalent(body, messages)
    const { tools, mode } = chatTools(chat, parser !== null)
    // As in chat: a forced call is Hermes blocks from the grammar, with no room for thinking.
    const constrained = mode.kind === 'required' || mode.kind === 'named'
    const readers: AssistantReaders = {
      reasoning: constrained ? null : reasoning,
      tools: mode.kind === 'none' || parser === null ? null : constrained ? constrainedCallParser() : parser,
      parallel: body.parallel_tool_calls !== false,
    }
    const input = { text: null, inputIds: null, messages, tools }
    // A parser that reads special tokens ([TOOL_CALLS]) has the tokenizer keep them.
    // Output logprobs (asked through include: chatEquivalent) come in chat's per-token shape, which is the Responses API's too.
    const params = await chatParams(chat, input, info, readers.tools?.keepsSpecialTokens === true)
    const shape = responsesShape({ body, conversation, readers, modelName: info.modelName, store })
    await respond(request, reply, engine, info, params, [input], shape, startMs)
  })
}
