/** Server-sent events as a client reads them: each event's name (Responses API) and its JSON data. */

export interface SseEvent {
  event: string | null
  data: Record<string, unknown>
}

export interface SseStream {
  events: SseEvent[]
  /** The data of each event, in order. */
  chunks: Record<string, unknown>[]
  /** The stream ended with OpenAI's `data: [DONE]`. */
  done: boolean
}

export function parseSse(body: string): SseStream {
  const events: SseEvent[] = []
  let done = false
  for (const block of body.split('\n\n')) {
    if (block.trim() === '') continue
    if (done) throw new Error(`an event after [DONE]: ${block}`)
    let event: string | null = null
    let data = ''
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7)
      else if (line.startsWith('data: ')) data += line.slice(6)
      else throw new Error(`not an SSE line: ${line}`)
    }
    if (data === '[DONE]') done = true
    else events.push({ event, data: JSON.parse(data) as Record<string, unknown> })
  }
  return { events, chunks: events.map((e) => e.data), done }
}
