/**
 * Two things llama-server does that node-llama-cpp's batching does not, put back by wrapping its
 * private addon handle (LlamaContext's `_ctx`); each is measured in docs/benchmarks.md, "llama.cpp".
 *
 * - Batch order. With one KV stream per sequence (node-llama-cpp creates contexts with kv_unified
 *   false, as llama-server's -np does), llama_decode splits a batch into micro-batches of increasing,
 *   consecutive sequence ids (llama_batch_allocr::split_equal, sequential), and each micro-batch
 *   reads all the weights again. llama-server adds its slots in id order; node-llama-cpp adds them
 *   in the order their sequences asked, so a step of 16 became 3 to 5 passes over the weights. The
 *   wrapper adds them sorted by sequence id.
 * - Threads. llama-server has -t for one-token batches and -tb for the rest; node-llama-cpp sets one
 *   count for both before every llama_decode. The wrapper sets the count by the batch's size.
 */
import type { LlamaContext } from 'node-llama-cpp'

interface Addon {
  initBatch(size: number): void
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array
  decodeBatch(): Promise<void>
  setThreads(threads: number): void
}

/** Wraps the context's addon handle; false (nothing changed) when this node-llama-cpp has no such handle. */
export function llamaServerBatching(context: LlamaContext, threads: { one: number; many: number }): boolean {
  const holder = context as unknown as { _ctx?: Addon & Record<string | symbol, unknown> }
  const inner = holder._ctx
  if (!inner || !['initBatch', 'addToBatch', 'decodeBatch', 'setThreads'].every((k) => typeof inner[k] === 'function')) return false
  let adds: { args: Parameters<Addon['addToBatch']>; out: Uint32Array }[] = []
  const wrapped: Partial<Addon> = {
    initBatch(size) {
      inner.setThreads(size === 1 ? threads.one : threads.many)
      adds = []
      inner.initBatch(size)
    },
    // The batch positions of the logits are known only once every item is in: node-llama-cpp reads
    // this array's length now and its values after decodeBatch, so it is filled in there.
    addToBatch(...args) {
      const out = new Uint32Array(args[3].length)
      adds.push({ args, out })
      return out
    },
    decodeBatch() {
      const items = adds.sort((a, b) => a.args[0] - b.args[0])
      adds = []
      for (const { args, out } of items) out.set(inner.addToBatch(...args))
      return inner.decodeBatch()
    },
    setThreads() {},
  }
  holder._ctx = new Proxy(inner, {
    get(o, k) {
      if (Object.hasOwn(wrapped, k)) return wrapped[k as keyof Addon]
      const v = o[k]
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(o) : v
    },
  })
  return true
}
