/**
 * Server-sent events as OpenAI streams them: `data: <json>` lines, then `data: [DONE]`.
 * Backpressure: when the socket stops draining (a client that reads slowly or not at all), the
 * stream waits at most the stall timeout for a drain; then the connection is closed, which aborts
 * the request and frees its KV like any disconnect.
 */
import type { ServerResponse } from 'node:http'

/** Streams being watched for a stall, with their timeout in milliseconds. */
const stallTimeouts = new WeakMap<ServerResponse, number>()
const stallTimers = new WeakMap<ServerResponse, NodeJS.Timeout>()

export function startSse(res: ServerResponse, headers: Record<string, string>, stallTimeoutMs: number): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    ...headers,
  })
  stallTimeouts.set(res, stallTimeoutMs)
  const drained = () => {
    clearTimeout(stallTimers.get(res))
    stallTimers.delete(res)
  }
  res.on('drain', drained)
  // 'finish': all was handed to the socket, which may go on to serve the next keep-alive request.
  res.once('finish', drained)
  res.once('close', drained)
}

/** Starts the stall clock when a write found the socket full, unless it is already running. */
function watchStall(res: ServerResponse): void {
  const ms = stallTimeouts.get(res)
  if (ms === undefined || stallTimers.has(res)) return
  // A pipelined response still queued behind an earlier one has no socket of its own yet: the
  // connection it waits on is the one to drop.
  stallTimers.set(res, setTimeout(() => (res.socket ?? res.req.socket).destroy(), ms).unref())
}

/** `event`: the SSE event name (the Responses API names each event; chat and completions do not). */
export function sendEvent(res: ServerResponse, data: unknown, event?: string): void {
  const frame = event === undefined ? `data: ${JSON.stringify(data)}\n\n` : `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
  if (!res.writableEnded && !res.write(frame)) watchStall(res)
}

/** `done`: end with OpenAI's `data: [DONE]` (chat and completions; the Responses API ends without). */
export function endSse(res: ServerResponse, done = true): void {
  if (res.writableEnded) return
  res.end(done ? 'data: [DONE]\n\n' : undefined)
  // What is still buffered must drain too: a client that never reads is dropped all the same.
  if (res.writableNeedDrain) watchStall(res)
}
