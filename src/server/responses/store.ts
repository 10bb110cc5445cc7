/**
 * Conversations of stored responses, for previous_response_id: in memory, the most recent
 * MAX_STORED_RESPONSES kept (least recently used dropped first), lost on restart. A response made
 * with store: false is not kept, as OpenAI documents.
 */
import type { ChatMessage } from '../../ipc/messages.ts'
import { SpanserveError } from '../../errors.ts'

export const MAX_STORED_RESPONSES = 1024

export class ResponseStore {
  /** Insertion order is recency: a hit is re-inserted, the oldest evicted. */
  private readonly conversations = new Map<string, ChatMessage[]>()

  constructor(private readonly capacity = MAX_STORED_RESPONSES) {}

  /** The conversation up to and including response `id`; a 400 naming previous_response_id if it is not kept. */
  get(id: string): ChatMessage[] {
    const c = this.conversations.get(id)
    if (!c) {
      throw new SpanserveError(
        'SPANSERVE_ERR_INVALID_REQUEST',
        `Previous response with id '${id}' not found: this server keeps the last ${this.capacity} stored responses in memory, not across restarts, and none made with store: false`,
        'previous_response_id',
      )
    }
    this.conversations.delete(id)
    this.conversations.set(id, c)
    return c
  }

  put(id: string, conversation: ChatMessage[]): void {
    this.conversations.set(id, conversation)
    while (this.conversations.size > this.capacity) this.conversations.delete(this.conversations.keys().next().value!)
  }

  get size(): number {
    return this.conversations.size
  }
}
