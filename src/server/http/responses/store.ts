/**
 * Stored responses, for previous_response_id and GET / DELETE /v1/responses/{id}: in memory, the
 * most recent MAX_STORED_RESPONSES kept (least recently used dropped first), lost on restart. A
 * response made with store: false is not kept, as OpenAI documents.
 */
import type { ChatMessage } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'

export const MAX_STORED_RESPONSES = 1024

export interface StoredResponse {
  /** The conversation up to and including this response: what previous_response_id continues. */
  conversation: ChatMessage[]
  /** The response object as answered, without logprobs (they would multiply what is kept). */
  response: Record<string, unknown>
  /** This request's input items, each with its id (GET /v1/responses/{id}/input_items). */
  inputItems: Record<string, unknown>[]
}

export class ResponseStore {
  /** Insertion order is recency: a hit is re-inserted, the oldest evicted. */
  private readonly responses = new Map<string, StoredResponse>()

  constructor(private readonly capacity = MAX_STORED_RESPONSES) {}

  /** The conversation up to and including response `id`; a 400 naming previous_response_id if it is not kept. */
  conversation(id: string): ChatMessage[] {
    const r = this.touch(id)
    if (!r) {
      throw new SpanserveError(
        'SPANSERVE_ERR_INVALID_REQUEST',
        `Previous response with id '${id}' not found: this server keeps the last ${this.capacity} stored responses in memory, not across restarts, and none made with store: false`,
        'previous_response_id',
      )
    }
    return r.conversation
  }

  /** Response `id`; a 404 naming response_id if it is not kept (never stored, deleted, evicted). */
  get(id: string): StoredResponse {
    const r = this.touch(id)
    if (!r) throw notFound(id, this.capacity)
    return r
  }

  put(id: string, stored: StoredResponse): void {
    this.responses.set(id, stored)
    while (this.responses.size > this.capacity) this.responses.delete(this.responses.keys().next().value!)
  }

  /** Forget response `id`; a 404 if it is not kept. */
  delete(id: string): void {
    if (!this.responses.delete(id)) throw notFound(id, this.capacity)
  }

  get size(): number {
    return this.responses.size
  }

  private touch(id: string): StoredResponse | undefined {
    const r = this.responses.get(id)
    if (r) {
      this.responses.delete(id)
      this.responses.set(id, r)
    }
    return r
  }
}

function notFound(id: string, capacity: number): SpanserveError {
  return new SpanserveError(
    'SPANSERVE_ERR_RESPONSE_NOT_FOUND',
    `Response with id '${id}' not found: this server keeps the last ${capacity} stored responses in memory, not across restarts, and none made with store: false`,
    'response_id',
  )
}
