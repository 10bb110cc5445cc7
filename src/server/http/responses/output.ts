/**
 * The Responses API's answer: output items (an assistant message with output_text, function_call
 * items) in the response object, and, streamed, the event sequence OpenAI sends: response.created,
 * output_item.added, content_part.added, output_text.delta ..., function_call_arguments.delta ... as
 * the arguments are generated, then .done, output_item.done, response.completed, each with its
 * sequence_number. A reasoning parser's thinking is a `reasoning` item before them, its text as a
 * `reasoning_text` content part (summary empty), as vLLM serves it.
 */
import { randomBytes } from 'node:crypto'
import type { FinishReason } from '../../../ipc/messages.ts'
import type { ParsedToolCall, ToolCallDelta } from '../tool-calls/parser.ts'
import type { AssistantDelta, AssistantStream } from '../tool-calls/assistant-output.ts'
import type { ResponsesBody } from './schema.ts'

export interface ResponsesUsage {
  input_tokens: number
  output_tokens: number
  total_tokens: number
  input_tokens_details: { cached_tokens: number }
  output_tokens_details: { reasoning_tokens: number }
}

export function responsesUsage(promptTokens: number, completionTokens: number): ResponsesUsage {
  return {
    input_tokens: promptTokens,
    output_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens_details: { reasoning_tokens: 0 },
  }
}

const itemId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`

type Item = Record<string, unknown> & { type: string; id: string }

/** OpenAI's token logprob entry: {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}. */
export type TokenLogprob = Record<string, unknown>

function messageItem(id: string, text: string, status: string, logprobs: TokenLogprob[] = []): Item {
  return { type: 'message', id, status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs }] }
}

function reasoningItem(id: string, text: string, status: string): Item {
  return { type: 'reasoning', id, summary: [], content: [{ type: 'reasoning_text', text }], status }
}

function callItem(id: string, c: ParsedToolCall, status: string): Item {
  return { type: 'function_call', id, call_id: c.id, name: c.name, arguments: c.arguments, status }
}

/** The response object; `output` null while it is in progress. */
export function responseObject(
  id: string,
  createdAt: number,
  body: ResponsesBody,
  modelName: string,
  state: { status: 'in_progress' | 'completed' | 'incomplete'; output: Item[]; usage: ResponsesUsage | null },
): Record<string, unknown> {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: state.status,
    error: null,
    incomplete_details: state.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: modelName,
    output: state.output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: body.store ?? true,
    temperature: body.temperature ?? null,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? null,
    top_logprobs: body.top_logprobs ?? null,
    truncation: 'disabled',
    usage: state.usage,
    metadata: body.metadata ?? {},
  }
}

/** Whether a finished generation is complete or was cut by max_output_tokens. */
export function finalStatus(finishReason: FinishReason): 'completed' | 'incomplete' {
  return finishReason === 'length' ? 'incomplete' : 'completed'
}

/** Whether the request asked for its output's logprobs (vLLM's rule: only through include). */
export function wantsLogprobs(body: ResponsesBody): boolean {
  return body.include?.includes('message.output_text.logprobs') === true
}

/** The response as stored: its output_text parts without logprobs, as OpenAI's retrieve gives them by default. */
export function withoutLogprobs(response: Record<string, unknown>): Record<string, unknown> {
  const output = (response.output as Item[]).map((o) => (o.type === 'message' ? { ...o, content: (o.content as Record<string, unknown>[]).map((c) => ({ ...c, logprobs: [] })) } : o))
  return { ...response, output }
}

/** The output items of a finished completion, already parsed into text and calls; `logprobs` go with the text. */
export function outputItems(reasoning: string | null, content: string | null, calls: ParsedToolCall[], status: string, logprobs: TokenLogprob[] = []): Item[] {
  const items: Item[] = []
  if (reasoning !== null) items.push(reasoningItem(itemId('rs'), reasoning, 'completed'))
  if (content !== null && (content !== '' || calls.length === 0)) items.push(messageItem(itemId('msg'), content, status, logprobs))
  for (const c of calls) items.push(callItem(itemId('fc'), c, 'completed'))
  return items
}

/** Builds a stream's events from text deltas (read by the reasoning and tool-call parsers when on). */
export class ResponsesEventStream {
  private seq = 0
  private message: { id: string; index: number; text: string; logprobs: TokenLogprob[] } | null = null
  private reasoning: { id: string; index: number; text: string } | null = null
  /** The call whose arguments are streaming, by its parser index. */
  private call: { id: string; index: number; parserIndex: number; c: ParsedToolCall } | null = null
  /** Token logprobs whose text has not been sent yet (held back by a parser). */
  private pendingLogprobs: TokenLogprob[] = []
  readonly output: Item[] = []

  constructor(
    private readonly send: (event: Record<string, unknown> & { type: string }) => void,
    private readonly parser: AssistantStream | null,
  ) {}

  event(type: string, fields: Record<string, unknown>): void {
    this.send({ type, sequence_number: this.seq++, ...fields })
  }

  /** New text from the model, with its tokens' logprobs when the request asked. */
  push(text: string, logprobs: readonly TokenLogprob[] = []): void {
    for (const l of logprobs) this.pendingLogprobs.push(l)
    if (this.parser) this.apply(this.parser.push(text))
    else this.text(text)
  }

  /** The end: what the parsers held back, and the open items closed. */
  finish(status: 'completed' | 'incomplete'): void {
    if (this.parser) this.apply(this.parser.finish())
    this.closeReasoning()
    this.closeCall()
    if (this.output.length === 0 && !this.message) this.openMessage()
    // Logprobs of text a parser kept (a call's) stay with the message, when there is one.
    if (this.message) for (const l of this.pendingLogprobs.splice(0)) this.message.logprobs.push(l)
    this.closeMessage(status)
  }

  private apply(d: AssistantDelta): void {
    this.think(d.reasoning)
    this.text(d.content)
    for (const piece of d.calls) this.callPiece(piece)
  }

  private think(delta: string): void {
    if (delta === '') return
    if (!this.reasoning) {
      const r = { id: itemId('rs'), index: this.output.length, text: '' }
      this.reasoning = r
      this.output.push(reasoningItem(r.id, '', 'in_progress'))
      this.event('response.output_item.added', { output_index: r.index, item: { type: 'reasoning', id: r.id, summary: [], content: [], status: 'in_progress' } })
      this.event('response.content_part.added', { item_id: r.id, output_index: r.index, content_index: 0, part: { type: 'reasoning_text', text: '' } })
    }
    const r = this.reasoning
    r.text += delta
    this.event('response.reasoning_text.delta', { item_id: r.id, output_index: r.index, content_index: 0, delta })
  }

  private closeReasoning(): void {
    const r = this.reasoning
    if (!r) return
    this.reasoning = null
    const item = reasoningItem(r.id, r.text, 'completed')
    this.output[r.index] = item
    this.event('response.reasoning_text.done', { item_id: r.id, output_index: r.index, content_index: 0, text: r.text })
    this.event('response.content_part.done', { item_id: r.id, output_index: r.index, content_index: 0, part: (item.content as unknown[])[0] })
    this.event('response.output_item.done', { output_index: r.index, item })
  }

  private text(delta: string): void {
    if (delta === '') return
    this.closeReasoning()
    this.closeCall()
    if (!this.message) this.openMessage()
    const m = this.message!
    m.text += delta
    const logprobs = this.pendingLogprobs.splice(0)
    for (const l of logprobs) m.logprobs.push(l)
    this.event('response.output_text.delta', { item_id: m.id, output_index: m.index, content_index: 0, delta, logprobs })
  }

  private openMessage(): void {
    const m = { id: itemId('msg'), index: this.output.length, text: '', logprobs: [] as TokenLogprob[] }
    this.message = m
    this.output.push(messageItem(m.id, '', 'in_progress'))
    this.event('response.output_item.added', { output_index: m.index, item: { type: 'message', id: m.id, status: 'in_progress', role: 'assistant', content: [] } })
    this.event('response.content_part.added', { item_id: m.id, output_index: m.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } })
  }

  private closeMessage(status: string): void {
    const m = this.message
    if (!m) return
    this.message = null
    const item = messageItem(m.id, m.text, status, m.logprobs)
    this.output[m.index] = item
    this.event('response.output_text.done', { item_id: m.id, output_index: m.index, content_index: 0, text: m.text, logprobs: m.logprobs })
    this.event('response.content_part.done', { item_id: m.id, output_index: m.index, content_index: 0, part: (item.content as unknown[])[0] })
    this.event('response.output_item.done', { output_index: m.index, item })
  }

  /** A call's opening (a new function_call item) or a fragment of its arguments. */
  private callPiece(p: ToolCallDelta): void {
    if (p.id !== undefined) {
      this.closeReasoning()
      this.closeMessage('completed')
      this.closeCall()
      const c: ParsedToolCall = { id: p.id, name: p.name ?? '', arguments: '' }
      const call = { id: itemId('fc'), index: this.output.length, parserIndex: p.index, c }
      this.call = call
      this.output.push(callItem(call.id, c, 'in_progress'))
      this.event('response.output_item.added', { output_index: call.index, item: callItem(call.id, c, 'in_progress') })
    }
    const call = this.call
    if (!call || call.parserIndex !== p.index || p.arguments === '') return
    call.c.arguments += p.arguments
    this.event('response.function_call_arguments.delta', { item_id: call.id, output_index: call.index, delta: p.arguments })
  }

  private closeCall(): void {
    const call = this.call
    if (!call) return
    this.call = null
    const done = callItem(call.id, call.c, 'completed')
    this.output[call.index] = done
    this.event('response.function_call_arguments.done', { item_id: call.id, output_index: call.index, arguments: call.c.arguments })
    this.event('response.output_item.done', { output_index: call.index, item: done })
  }
}
