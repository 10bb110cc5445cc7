/**
 * Token ids back from the schedulers into text for the server, batch by batch: each live request's
 * tokens through its state (detokenizer, stop strings, stop token ids); a request stopped here is
 * aborted at its scheduler, which is still decoding it.
 */
import type { BatchTokenIdOutput, StrOutput } from '../ipc/messages.ts'
import type { Outbox } from '../ipc/channel.ts'
import * as tracing from '../tracing/index.ts'
import type { RequestStates } from './request-state.ts'

export interface OutputDeps {
  states: RequestStates
  schedulers: Outbox[]
  toServer: Outbox
  /** --num-continuous-decode-steps > 1: a rid can repeat within a batch. */
  repeatsRids: boolean
}

export function detokenizeBatch(d: OutputDeps, batch: BatchTokenIdOutput): void {
  const t0 = tracing.nowNs()
  const items: StrOutput[] = []
  const ended: string[] = []
  for (let i = 0; i < batch.rids.length; i++) {
    const rid = batch.rids[i]!
    const t = d.states.get(rid)
    if (!t) continue // aborted by the server meanwhile
    const tokenId = batch.tokens[i]!
    const { text, finishReason, stoppedHere } = t.push(tokenId, batch.finished[i]!)
    // The scheduler is still decoding it: stop it and free its KV.
    if (stoppedHere) d.schedulers[t.dp]!.post({ type: 'abort', rid, reason: 'stop string' })
    const item: StrOutput = { rid, text, tokenId, finishReason, promptTokens: t.promptTokens, completionTokens: t.completionTokens, stats: batch.stats[i] ?? null }
    const cached = batch.cachedTokens?.[i]
    if (cached !== undefined) item.cachedTokens = cached
    const lp = batch.logprobs?.[i]
    if (lp) item.logprobs = t.logprobsText(tokenId, lp)
    items.push(item)
    if (finishReason !== null) {
      d.states.forget(rid)
      ended.push(rid)
    }
  }
  if (items.length > 0) d.toServer.post({ type: 'batch_str', items })
  // One detokenize slice per request per batch at level 3; the request's end closes its thread. A rid
  // repeats within a batch only after continuous decode steps, and only a recorded slice needs it once.
  const sliced = d.repeatsRids && tracing.isTracingEnabled() && tracing.getRecordedLevel() === 3 ? [...new Set(batch.rids)] : batch.rids
  tracing.batchSlice(sliced, tracing.SLICE.detokenize, t0, tracing.nowNs(), undefined, 3)
  for (const rid of ended) tracing.reqFinish(rid)
}
