/**
 * Big request bodies are parsed off the event loop. Decoding and parsing a 4 MB body takes the
 * server 10-25 ms, during which no other stream's events are written; in this thread it costs the
 * event loop nothing, and a prompt too long for the context is refused there, so its text never
 * comes back. The bytes are moved, not copied, when they own their memory. One thread, started on
 * the first big body; a thread that dies fails the bodies it held with a 500 and is started again.
 */
import { Worker } from 'node:worker_threads'
import type { BodyOutcome, PromptCheck } from './parse.ts'
import type { BodyAnswer, BodyJob } from './thread-main.ts'

/** Bodies from this size up are parsed in the thread: below it, parsing costs the loop well under a millisecond. */
export const OFF_LOOP_BYTES = 256 * 1024

export class BodyThread {
  private worker: Worker | null = null
  private nextId = 0
  private readonly pending = new Map<number, (outcome: BodyOutcome) => void>()

  parse(bytes: Uint8Array, check: PromptCheck | null): Promise<BodyOutcome> {
    const worker = this.started()
    const id = this.nextId++
    return new Promise((resolve) => {
      this.pending.set(id, resolve)
      const owns = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
      const job: BodyJob = { id, bytes, check }
      worker.postMessage(job, owns ? [bytes.buffer as ArrayBuffer] : [])
    })
  }

  async close(): Promise<void> {
    const w = this.worker
    this.worker = null
    if (w) await w.terminate()
  }

  private started(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(new URL('./thread-entry.mjs', import.meta.url))
    // The server's life is its HTTP server's, not this thread's.
    worker.unref()
    worker.on('message', ({ id, outcome }: BodyAnswer) => {
      const resolve = this.pending.get(id)
      this.pending.delete(id)
      resolve?.(outcome)
    })
    const ended = (why: string) => {
      if (this.worker === worker) this.worker = null
      for (const resolve of this.pending.values()) resolve({ kind: 'refused', code: 'SPANSERVE_ERR_INTERNAL', message: `the request body could not be parsed: ${why}`, param: null })
      this.pending.clear()
    }
    worker.on('error', (err) => ended(err.message))
    worker.on('exit', (code) => ended(`the body thread exited (${code})`))
    this.worker = worker
    return worker
  }
}
