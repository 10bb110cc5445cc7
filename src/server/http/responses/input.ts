/**
 * A Responses request as the chat pipeline runs it: instructions and input items become chat
 * messages (function_call items an assistant turn's tool_calls, function_call_output items tool
 * messages), and its tools, tool_choice and text.format the chat fields that the template, the
 * tool-call parser and the output constraint read.
 */
import type { ChatMessage } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import type { ChatBody } from '../schemas.ts'
import { templateArguments } from '../chat/request.ts'
import { wantsLogprobs } from './output.ts'
import type { ResponsesBody, ResponsesItem, ResponsesTextPart } from './schema.ts'

function text(content: string | ResponsesTextPart[] | undefined): string {
  if (content === undefined) return ''
  return typeof content === 'string' ? content : content.map((p) => p.text).join('')
}

/** The input items as chat messages; consecutive function calls are one assistant turn. */
export function inputMessages(input: string | ResponsesItem[]): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }]
  const out: ChatMessage[] = []
  for (const it of input) {
    const type = it.type ?? 'message'
    if (type === 'reasoning') continue
    if (type === 'message') {
      out.push({ role: it.role!, content: text(it.content) })
    } else if (type === 'function_call') {
      const call = { id: it.call_id!, type: 'function' as const, function: { name: it.name!, arguments: templateArguments(it.arguments!) } }
      const last = out.at(-1)
      if (last && last.role === 'assistant' && last.tool_calls) last.tool_calls.push(call)
      else out.push({ role: 'assistant', content: '', tool_calls: [call] })
    } else {
      out.push({ role: 'tool', content: text(it.output), tool_call_id: it.call_id! })
    }
  }
  return out
}

/** The chat body the rest of the pipeline reads: sampling, logprobs, tools, tool_choice and the output format. */
export function chatEquivalent(body: ResponsesBody, messages: ChatMessage[]): ChatBody {
  const fmt = body.text?.format
  const structured = body.structured_outputs ?? null
  // One constraint per request, named as the Responses body names it (vLLM refuses both at once too).
  if (structured !== null && fmt !== undefined && fmt.type !== 'text') {
    throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'structured_outputs and text.format cannot both constrain the output; set one', 'structured_outputs')
  }
  const responseFormat =
    fmt === undefined || fmt.type === 'text'
      ? null
      : fmt.type === 'json_object'
        ? { type: 'json_object' }
        : { type: 'json_schema', json_schema: { name: fmt.name, schema: fmt.schema, strict: fmt.strict ?? null } }
  const choice = body.tool_choice
  return {
    model: body.model,
    messages: messages as ChatBody['messages'],
    max_tokens: body.max_output_tokens ?? null,
    temperature: body.temperature ?? null,
    top_p: body.top_p ?? null,
    stream: body.stream ?? null,
    tools: body.tools
      ? body.tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? null } }))
      : null,
    tool_choice: typeof choice === 'object' && choice !== null ? { type: 'function', function: { name: choice.name } } : (choice ?? null),
    parallel_tool_calls: body.parallel_tool_calls ?? null,
    // Output logprobs only when include asks (vLLM's rule); top_logprobs alone is ignored.
    ...(wantsLogprobs(body) ? { logprobs: true, top_logprobs: body.top_logprobs ?? null } : {}),
    // Read by the output constraint (src/server/http/structured-output/request.ts).
    ...(responseFormat ? { response_format: responseFormat } : {}),
    ...(structured !== null ? { structured_outputs: structured } : {}),
    bootstrap_host: body.bootstrap_host ?? null,
    bootstrap_port: body.bootstrap_port ?? null,
    bootstrap_room: body.bootstrap_room ?? null,
  } as ChatBody
}
