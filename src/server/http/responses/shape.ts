/**
 * The Responses API's adapter to the one responder (generation/responder.ts): the output's events
 * (responses/output.ts) as its chunks, response.created and response.in_progress to open the stream,
 * response.completed (or .incomplete) to close it, the error event, the whole response object, and
 * each finished response kept in the store for previous_response_id.
 */
import type { ChatMessage, StrOutput } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import { templateArguments } from '../chat/request.ts'
import type { ChunkBase, ResponseShape } from '../generation/shape.ts'
import type { ParsedToolCall } from '../tool-calls/parser.ts'
import { AssistantStream, readAssistant, type AssistantReaders } from '../tool-calls/assistant-output.ts'
import { listedInputItems } from './input-items.ts'
import { finalStatus, outputItems, responseObject, responsesUsage, ResponsesEventStream, withoutLogprobs, type TokenLogprob } from './output.ts'
import type { ResponsesBody } from './schema.ts'
import type { ResponseStore } from './store.ts'

/** The assistant's turn as the next request's history reads it. */
function assistantTurn(content: string, calls: ParsedToolCall[]): ChatMessage {
  const turn: ChatMessage = { role: 'assistant', content }
  if (calls.length > 0) turn.tool_calls = calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: templateArguments(c.arguments) } }))
  return turn
}

/** The engine knows the input as chat messages: an error about them is about the Responses `input`. */
function asResponsesError(err: SpanserveError): SpanserveError {
  return err.param === 'messages' ? new SpanserveError(err.code, err.message, 'input') : err
}

/** Chat's per-token logprobs (the Responses API's shape too) as a list; none when not asked. */
const tokenLogprobs = (logprobs: Record<string, unknown> | null): TokenLogprob[] => (logprobs ? (logprobs.content as TokenLogprob[]) : [])

export interface ResponsesRequest {
  body: ResponsesBody
  /** The conversation so far (a previous response's and this input), without instructions. */
  conversation: ChatMessage[]
  /** The reasoning and tool-call parsers that read the output; both null: plain text. */
  readers: AssistantReaders
  modelName: string
  store: ResponseStore
}

/** A fresh shape per request: a stream's events and parse state live in it. */
export function responsesShape({ body, conversation, readers, modelName, store }: ResponsesRequest): ResponseShape {
  const reads = readers.reasoning !== null || readers.tools !== null
  const pending: Record<string, unknown>[] = []
  const events = new ResponsesEventStream((e) => void pending.push(e), reads ? new AssistantStream(readers) : null)
  const idOf = (base: ChunkBase) => base.id.replace('resp-', 'resp_')
  const remember = (base: ChunkBase, content: string, calls: ParsedToolCall[], response: Record<string, unknown>) => {
    if (body.store !== false) store.put(idOf(base), { conversation: [...conversation, assistantTurn(content, calls)], response: withoutLogprobs(response), inputItems: listedInputItems(body.input) })
  }
  const unexpected = () => {
    throw new Error('the Responses API answers in its own protocol')
  }
  return {
    idPrefix: 'resp',
    operation: 'chat',
    chunk: (_base, text, finishReason, _first, logprobs) => {
      events.push(text, tokenLogprobs(logprobs))
      if (finishReason !== null) events.finish(finalStatus(finishReason))
      return pending.splice(0)
    },
    whole: unexpected,
    usageChunk: unexpected,
    protocol: {
      open: (base) => {
        const r = responseObject(idOf(base), base.created, body, modelName, { status: 'in_progress', output: [], usage: null })
        events.event('response.created', { response: r })
        events.event('response.in_progress', { response: r })
        return pending.splice(0)
      },
      close: (base, last: StrOutput) => {
        const status = finalStatus(last.finishReason ?? 'stop')
        const calls = events.output.filter((o) => o.type === 'function_call').map((o) => ({ id: o.call_id as string, name: o.name as string, arguments: o.arguments as string }))
        const content = events.output
          .filter((o) => o.type === 'message')
          .map((o) => (o.content as { text: string }[])[0]!.text)
          .join('')
        const usage = responsesUsage(last.promptTokens, last.completionTokens)
        const response = responseObject(idOf(base), base.created, body, modelName, { status, output: events.output, usage })
        remember(base, content, calls, response)
        events.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response })
        return pending.splice(0)
      },
      error: (err) => {
        events.event('error', { code: err.code, message: err.message, param: err.param })
        return pending.splice(0)[0]!
      },
      whole: (base, text, last, logprobs) => {
        const status = finalStatus(last.finishReason ?? 'stop')
        const parsed = reads ? readAssistant(readers, text) : { reasoning: null, content: text, calls: [] }
        const output = outputItems(parsed.reasoning, parsed.content, parsed.calls, status, tokenLogprobs(logprobs))
        const response = responseObject(idOf(base), base.created, body, modelName, { status, output, usage: responsesUsage(last.promptTokens, last.completionTokens) })
        remember(base, parsed.content ?? '', parsed.calls, response)
        return response
      },
      clientError: asResponsesError,
    },
  }
}
