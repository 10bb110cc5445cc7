/**
 * The scheduler loop with the prefix cache on, driving a scripted worker (token 5 for every sequence
 * due one): a prompt that starts with a finished request's prompt prefills only the rest, its first
 * chunk carrying the block table that starts on the cached blocks; an aborted prefill caches nothing.
 */
import t from 'tap'
import { SchedulerLoop, type LoopIo } from '../../src/scheduler/loop.ts'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import type { BatchTokenIdOutput, ForwardBatch, TokenizedGenerateReqInput } from '../../src/ipc/messages.ts'
import { conditionWaiters } from '../helpers/until.ts'

type Limits = ConstructorParameters<typeof SchedulerLoop>[0]

/** `failing(batch)`: the rids the scripted worker reports failed in that step. */
function harness(limits: Partial<Limits> = {}, failing: (batch: ForwardBatch) => string[] = () => []) {
  const steps: ForwardBatch[] = []
  const outputs: BatchTokenIdOutput[] = []
  const { until, check } = conditionWaiters()
  let loop: SchedulerLoop
  const io: LoopIo = {
    forward: (batch) => {
      steps.push(batch)
      const failed = failing(batch)
      const rids = batch.prefill.filter((p) => p.last && !failed.includes(p.rid)).map((p) => p.rid)
      for (let n = 0; batch.decode.length > 0 && n < batch.decodeSteps; n++) rids.push(...batch.decode.filter((r) => !failed.includes(r)))
      setTimeout(() => loop.onForwardOutput({ type: 'forward_out', step: batch.step, tpRank: 0, allReduceMs: 0, rids, tokens: new Int32Array(rids.length).fill(5), failed, prefillMs: 0, decodeMs: 0 }))
      check()
    },
    output: (o) => outputs.push(o),
    error: () => {},
  }
  loop = new SchedulerLoop(
    { maxBatchSize: 4, maxQueue: 8, maxPrefillTokens: 24, maxTotalTokens: 1000, contextLength: 200, eosTokenIds: [0], tpSize: 1, depth: 2, decodeSteps: 1, prefixCache: true, ...limits },
    io,
  )
  void loop.run()
  return { loop, steps, outputs, until }
}

const req = (rid: string, ids: number[], maxTokens: number): TokenizedGenerateReqInput => ({
  type: 'tokenized',
  rid,
  trace: null,
  inputIds: Int32Array.from(ids),
  sampling: { temperature: 0, topP: 1, topK: 0, seed: null },
  maxTokens,
  ignoreEos: false,
  arrivalMs: 0,
})
const ids = (n: number, from = 100) => Array.from({ length: n }, (_, i) => from + i)
const firstChunk = (steps: ForwardBatch[], rid: string) => steps.flatMap((s) => s.prefill).find((p) => p.rid === rid && p.sampling !== null)!
const cachedOf = (outputs: BatchTokenIdOutput[], rid: string) => {
  for (const o of outputs) {
    const i = o.rids.indexOf(rid)
    if (i >= 0) return o.cachedTokens?.[i]
  }
  return undefined
}

t.test('a shared prefix is prefilled once; the rest starts on its blocks', async (t) => {
  const h = harness()
  h.loop.submit(req('a', ids(40), 3))
  await h.loop.idle()
  const a = firstChunk(h.steps, 'a')
  t.equal(a.start, 0)
  t.equal(cachedOf(h.outputs, 'a'), 0)
  t.equal(h.loop.takeStats().cacheTokens, 2 * BT, "a's two whole prompt blocks are cached")

  h.loop.submit(req('b', [...ids(40), 7, 8, 9], 3))
  await h.loop.idle()
  const b = firstChunk(h.steps, 'b')
  t.equal(b.start, 2 * BT, "b's first chunk starts after the cached blocks")
  t.same([...b.tokens], [...ids(40), 7, 8, 9].slice(2 * BT, 2 * BT + 24), 'and carries only new tokens (up to the chunk budget)')
  t.same([...b.blocks!.subarray(0, 2)], [...a.blocks!.subarray(0, 2)], "its table starts on a's blocks")
  t.equal(cachedOf(h.outputs, 'b'), 2 * BT, 'usage reports the cached tokens')
  t.equal(h.outputs.flatMap((o) => o.rids.filter((r) => r === 'b')).length, 3, 'b still generates max_tokens tokens')

  // The whole prompt cached: the last block is recomputed for its logits.
  h.loop.submit(req('c', ids(32), 2))
  await h.loop.idle()
  const c = firstChunk(h.steps, 'c')
  t.equal(c.start, BT)
  t.equal(c.tokens.length, BT)
  const stats = h.loop.takeStats()
  t.equal(stats.kvUsedTokens, 0, 'nothing running holds KV')
  t.ok(stats.cacheHitTokens! >= 3 * BT)
  t.ok(h.steps.at(-1)!.release.length + h.steps.flatMap((s) => [...(s.freeBlocks ?? [])]).length > 0, 'the worker is told what to free')
  h.loop.close()
})

t.test('an abort during prefill caches nothing', async (t) => {
  const h = harness({ maxPrefillTokens: 16 })
  h.loop.submit(req('a', ids(64), 3))
  // Its first chunk sent, three to go.
  await h.until(() => h.steps.length > 0)
  h.loop.abort('a')
  await h.loop.idle()
  t.equal(h.loop.takeStats().cacheTokens, 0)
  h.loop.submit(req('b', ids(64), 1))
  await h.loop.idle()
  t.equal(firstChunk(h.steps, 'b').start, 0)
  h.loop.close()
})

t.test('a worker that lost sequences empties the cache', async (t) => {
  const h = harness()
  h.loop.submit(req('a', ids(40), 1))
  await h.loop.idle()
  t.equal(h.loop.takeStats().cacheTokens, 2 * BT)
  h.loop.reset()
  t.equal(h.loop.takeStats().cacheTokens, 0, 'a reset (a peer died) drops the cache')
  h.loop.submit(req('b', ids(40), 1))
  await h.loop.idle()
  t.equal(firstChunk(h.steps, 'b').start, 0, 'and nothing is matched after it')
  h.loop.close()
})

t.test('a request the worker could not start keeps the cache; a lost sequence empties it', async (t) => {
  const h = harness({}, (batch) => [...batch.prefill.filter((p) => p.rid === 'x').map((p) => p.rid), ...batch.decode.filter((r) => r === 'y')])
  h.loop.submit(req('a', ids(40), 1))
  await h.loop.idle()
  h.loop.submit(req('x', ids(20, 700), 3))
  await h.loop.idle()
  t.equal(h.loop.takeStats().cacheTokens, 2 * BT, 'x failed at its first chunk, on no cached prefix: the cache stays')
  h.loop.submit(req('y', ids(20, 800), 3))
  await h.loop.idle()
  t.equal(h.loop.takeStats().cacheTokens, 0, 'y was lost while decoding: the worker may have lost the cache too')
  h.loop.close()
})
