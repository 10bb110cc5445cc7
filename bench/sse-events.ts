/** The `data:` payloads of a streamed response's server-sent events, parsed, as they arrive ([DONE] left out). */
export async function* sseEvents<T = Record<string, unknown>>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const decoder = new TextDecoder()
  let buf = ''
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true })
    let sep: number
    while ((sep = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, sep)
      buf = buf.slice(sep + 2)
      if (!event.startsWith('data: ')) continue
      const data = event.slice(6)
      if (data !== '[DONE]') yield JSON.parse(data) as T
    }
  }
}
