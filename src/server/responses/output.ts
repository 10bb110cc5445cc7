/**
 * The Responses API's answer: output items (an assistant message with output_text, function_call
 * items) in the response object, and, streamed, the event sequence OpenAI sends: response.created,
 * output_item.added, content_part.added, output_text.delta ..., function_call_arguments.delta/done,
 * output_item.done, response.completed, each with its sequence_number.
 */
import { randomBytes } from 'node:crypto'
import type { FinishReason } from '../../ipc/messages.ts'
import type { ParsedToolCall, ToolCallStream } from '../tool-calls/parser.ts'
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

function messageItem(id: string, text: string, status: string): Item {
  return { type: 'message', id, status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] }
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
    truncation: 'disabled',
    usage: state.usage,
    metadata: body.metadata ?? {},
  }
}

/** Whether a finished generation is complete or was cut by max_output_tokens. */
export function finalStatus(finishReason: FinishReason): 'completed' | 'incomplete' {
  return finishReason === 'length' ? 'incomplete' : 'completed'
}

/** The output items of a finished completion, already parsed into text and calls. */
export function outputItems(content: string | null, calls: ParsedToolCall[], status: string): Item[] {
  const items: Item[] = []
  if (content !== null && (content !== '' || calls.length === 0)) items.push(messageItem(itemId('msg'), content, status))
  for (const c of calls) items.push(callItem(itemId('fc'), c, 'completed'))
  return items
}

/** Builds a stream's events from text deltas (read by the tool-call parser when tools are on). */
export class ResponsesEventStream {
  private seq = 0
  private message: { id: string; index: number; text: string } | null = null
  readonly output: Item[] = []

  constructor(
    private readonly send: (event: Record<string, unknown> & { type: string }) => void,
    private readonly parser: ToolCallStream | null,
  ) {}

  event(type: string, fields: Record<string, unknown>): void {
    this.send({ type, sequence_number: this.seq++, ...fields })
  }

  /** New text from the model. */
  push(text: string): void {
    if (!this.parser) return this.text(text)
    const d = this.parser.push(text)
    this.text(d.content)
    for (const c of d.calls) this.call(c)
  }

  /** The end: what the parser held back, and the open message closed. */
  finish(status: 'completed' | 'incomplete'): void {
    if (this.parser) {
      const d = this.parser.finish()
      this.text(d.content)
      for (const c of d.calls) this.call(c)
    }
    if (this.output.length === 0 && !this.message) this.openMessage()
    this.closeMessage(status)
  }

  private text(delta: string): void {
    if (delta === '') return
    if (!this.message) this.openMessage()
    const m = this.message!
    m.text += delta
    this.event('response.output_text.delta', { item_id: m.id, output_index: m.index, content_index: 0, delta, logprobs: [] })
  }

  private openMessage(): void {
    const m = { id: itemId('msg'), index: this.output.length, text: '' }
    this.message = m
    this.output.push(messageItem(m.id, '', 'in_progress'))
    this.event('response.output_item.added', { output_index: m.index, item: { type: 'message', id: m.id, status: 'in_progress', role: 'assistant', content: [] } })
    this.event('response.content_part.added', { item_id: m.id, output_index: m.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } })
  }

  private closeMessage(status: string): void {
    const m = this.message
    if (!m) return
    this.message = null
    const item = messageItem(m.id, m.text, status)
    this.output[m.index] = item
    this.event('response.output_text.done', { item_id: m.id, output_index: m.index, content_index: 0, text: m.text, logprobs: [] })
    this.event('response.content_part.done', { item_id: m.id, output_index: m.index, content_index: 0, part: (item.content as unknown[])[0] })
    this.event('response.output_item.done', { output_index: m.index, item })
  }

  private call(c: ParsedToolCall): void {
    this.closeMessage('completed')
    const id = itemId('fc')
    const index = this.output.length
    const done = callItem(id, c, 'completed')
    this.output.push(done)
    this.event('response.output_item.added', { output_index: index, item: { ...callItem(id, c, 'in_progress'), arguments: '' } })
    this.event('response.function_call_arguments.delta', { item_id: id, output_index: index, delta: c.arguments })
    this.event('response.function_call_arguments.done', { item_id: id, output_index: index, arguments: c.arguments })
    this.event('response.output_item.done', { output_index: index, item: done })
  }
}
