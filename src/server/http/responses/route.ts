/**
 * POST /v1/responses (OpenAI's Responses API, which vLLM serves too): run through the chat pipeline
 * (responses/input.ts), answered as a response object or as Responses stream events
 * (responses/output.ts), with the output's logprobs when include asks; kept in a bounded in-memory
 * store (responses/store.ts) for previous_response_id and the GET / DELETE routes
 * (responses/stored-routes.ts).
 */
import { SpanserveError } from '../../../errors.ts'
import type { FastifyPluginAsync } from 'fastify'
import type { RoutesOptions } from '../route-options.ts'
import type { ChatMessage, StrOutput } from '../../../ipc/messages.ts'
import { chatTools, templateArguments } from '../chat/request.ts'
import { chatParams } from '../chat/params.ts'
import { buildRequest } from '../generation/request.ts'
import { GenerationRun } from '../generation/run.ts'
import type { RequestSink } from '../../engine-client/engine-client.ts'
import { endSse, sendEvent, startSse } from '../sse.ts'
import type { ParsedToolCall } from '../tool-calls/parser.ts'
import { constrainedCallParser, toolCallParser } from '../tool-calls/parsers.ts'
import { reasoningParser } from '../reasoning/parsers.ts'
import { AssistantStream, readAssistant, type AssistantReaders } from '../tool-calls/assistant-output.ts'
import { warnUnknownFields } from '../unknown-fields.ts'
import { chatEquivalent, inputMessages } from './input.ts'
import { finalStatus, outputItems, responseObject, responsesUsage, ResponsesEventStream, withoutLogprobs, type TokenLogprob } from './output.ts'
import { responsesBody, type ResponsesBody } from './schema.ts'
import { ResponseStore } from './store.ts'
import { listedInputItems } from './input-items.ts'
import { storedResponseRoutes } from './stored-routes.ts'

/** The assistant's turn as the next request's history reads it. */
function assistantTurn(content: string, calls: ParsedToolCall[]): ChatMessage {
  const turn: ChatMessage = { role: 'assistant', content }
  if (calls.length > 0) turn.tool_calls = calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: templateArguments(c.arguments) } }))
  return turn
}

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
    const reads = readers.reasoning !== null || readers.tools !== null
    const input = { text: null, inputIds: null, messages, tools }
    // A parser that reads special tokens ([TOOL_CALLS]) has the tokenizer keep them.
    const params = await chatParams(chat, input, info, readers.tools?.keepsSpecialTokens === true)
    const built = buildRequest(request, info, params, input, 0, { idPrefix: 'resp', operation: 'chat' })
    const run = new GenerationRun(request, reply, engine, info, built, params, startMs)
    // Output logprobs (asked through include: chatEquivalent) in chat's per-token shape, which is the Responses API's too.
    const formatter = run.formatter
    const logprobsOf = (item: StrOutput): TokenLogprob[] => (formatter && item.logprobs ? (formatter.format([item.logprobs]).content as TokenLogprob[]) : [])
    const id = built.base.id.replace('resp-', 'resp_')
    const createdAt = built.base.created
    const remember = (content: string, calls: ParsedToolCall[], response: Record<string, unknown>) => {
      if (body.store !== false) store.put(id, { conversation: [...conversation, assistantTurn(content, calls)], response: withoutLogprobs(response), inputItems: listedInputItems(body.input) })
    }

    if (!body.stream) {
      await new Promise<void>((resolve) => {
        run.submit({
          onOutput: (item) => {
            run.output(item)
            if (item.finishReason === null) return
            run.finish(item)
            const status = finalStatus(item.finishReason)
            const parsed = reads ? readAssistant(readers, run.completion) : { reasoning: null, content: run.completion, calls: [] }
            const logprobs = formatter ? (formatter.format(run.logprobs).content as TokenLogprob[]) : []
            const output = outputItems(parsed.reasoning, parsed.content, parsed.calls, status, logprobs)
            const response = responseObject(id, createdAt, body, info.modelName, { status, output, usage: responsesUsage(item.promptTokens, item.completionTokens) })
            remember(parsed.content ?? '', parsed.calls, response)
            void reply.headers(built.headers).send(response)
            resolve()
          },
          onError: (e) => {
            const err = asResponsesError(e)
            run.answerError(err, false, () => undefined)
            resolve()
          },
        })
      })
      return
    }

    const res = reply.raw
    let started = false
    const events = new ResponsesEventStream((e) => sendEvent(res, e, e.type), reads ? new AssistantStream(readers) : null)
    const begin = () => {
      if (started) return
      started = true
      reply.hijack()
      startSse(res, built.headers, info.streamStallTimeoutMs)
      const r = responseObject(id, createdAt, body, info.modelName, { status: 'in_progress', output: [], usage: null })
      events.event('response.created', { response: r })
      events.event('response.in_progress', { response: r })
    }
    await new Promise<void>((resolve) => {
      const sink: RequestSink = {
        onOutput: (item: StrOutput) => {
          begin()
          run.output(item)
          if (run.stopIfSlowReader(sink, item)) return
          events.push(item.text, logprobsOf(item))
          if (item.finishReason === null) return
          run.finish(item)
          const status = finalStatus(item.finishReason)
          events.finish(status)
          const calls = events.output.filter((o) => o.type === 'function_call').map((o) => ({ id: o.call_id as string, name: o.name as string, arguments: o.arguments as string }))
          const content = events.output
            .filter((o) => o.type === 'message')
            .map((o) => (o.content as { text: string }[])[0]!.text)
            .join('')
          const usage = responsesUsage(item.promptTokens, item.completionTokens)
          const response = responseObject(id, createdAt, body, info.modelName, { status, output: events.output, usage })
          remember(content, calls, response)
          events.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response })
          endSse(res, false)
          resolve()
        },
        onError: (e) => {
          const err = asResponsesError(e)
          run.answerError(err, started, () => {
            events.event('error', { code: err.code, message: err.message, param: err.param })
            endSse(res, false)
          })
          resolve()
        },
      }
      run.submit(sink)
    })
  })
}

/** The engine knows the input as chat messages: an error about them is about the Responses `input`. */
function asResponsesError(err: SpanserveError): SpanserveError {
  return err.param === 'messages' ? new SpanserveError(err.code, err.message, 'input') : err
}
