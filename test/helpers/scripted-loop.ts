/**
 * A scheduler loop against a scripted worker that answers every step at once with token 5: what
 * the loop sends, in order, and which requests finished. Orders of events only: no timing.
 */
import { SchedulerLoop, type LoopIo } from '../../src/scheduler/loop.ts'
import type { BatchTokenIdOutput, ForwardBatch, TokenizedGenerateReqInput } from '../../src/ipc/messages.ts'
import { conditionWaiters } from './until.ts'

type Limits = ConstructorParameters<typeof SchedulerLoop>[0]

/** `extra`: more of the loop's io (its kv, its observer); `check()` re-tests the until() conditions from there. */
export function harness(limits: Partial<Limits>, extra: (check: () => void) => Partial<LoopIo> = () => ({})) {
  const steps: ForwardBatch[] = []
  const outputs: BatchTokenIdOutput[] = []
  /** rids in the order they finished. */
  const finished: string[] = []
  /** until(pred) resolves once pred holds, checked after each step sent and each output. */
  const { until, check } = conditionWaiters()
  let loop: SchedulerLoop
  const io: LoopIo = {
    forward: (batch) => {
      steps.push(batch)
      const rids = batch.prefill.filter((p) => p.last).map((p) => p.rid)
      for (let n = 0; batch.decode.length > 0 && n < batch.decodeSteps; n++) rids.push(...batch.decode)
      setImmediate(() =>
        loop.onForwardOutput({ type: 'forward_out', step: batch.step, tpRank: 0, allReduceMs: 0, rids, tokens: new Int32Array(rids.length).fill(5), failed: [], prefillMs: 0, decodeMs: 0 }),
      )
      check()
    },
    output: (o) => {
      outputs.push(o)
      o.rids.forEach((rid, i) => o.finished[i] !== null && finished.push(rid))
      check()
    },
    error: () => {},
    ...extra(check),
  }
  loop = new SchedulerLoop({ maxBatchSize: 4, maxQueue: 32, maxPrefillTokens: 64, maxTotalTokens: 1000, contextLength: 100, eosTokenIds: [0], tpSize: 1, depth: 1, decodeSteps: 1, ...limits }, io)
  void loop.run()
  return { loop, steps, outputs, finished, until }
}

export const req = (rid: string, client: string, promptLen: number, maxTokens: number): TokenizedGenerateReqInput => ({
  type: 'tokenized',
  rid,
  trace: null,
  inputIds: new Int32Array(promptLen).fill(7),
  sampling: { temperature: 0, topP: 1, topK: 0, seed: null },
  maxTokens,
  ignoreEos: false,
  arrivalMs: 0,
  client,
})

/** The step index at which each rid's first prefill chunk was sent (its admission). */
export function admittedAt(steps: readonly ForwardBatch[]): Map<string, number> {
  const at = new Map<string, number>()
  steps.forEach((s, i) => s.prefill.forEach((p) => at.has(p.rid) || at.set(p.rid, i)))
  return at
}
