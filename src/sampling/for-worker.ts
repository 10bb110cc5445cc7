/**
 * What the tokenizer adds to a request's SamplingParams for the worker: the token ids a penalty
 * reads and the worker cannot know (prompt tokens, a resumed request's tokens so far, the EOS ids
 * that min_tokens holds back; a constrained request's grammar replays the tokens so far too).
 * Nothing is added for a request that uses no such penalty.
 */
import type { SamplingParams } from './params.ts'

export interface WorkerSamplingContext {
  /** The prompt as the scheduler receives it (a resumed request's generated tokens excluded). */
  promptIds: readonly number[]
  /** A resumed request's tokens so far. */
  resumedIds: readonly number[]
  eosTokenIds: readonly number[]
  ignoreEos: boolean
}

export function forWorker(p: SamplingParams, c: WorkerSamplingContext): SamplingParams {
  const penalised = p.presencePenalty !== undefined || p.frequencyPenalty !== undefined || p.repetitionPenalty !== undefined || p.minTokens !== undefined
  // A grammar, like a penalty, must see a resumed request's tokens so far: it goes on from where they left it.
  const replays = penalised || p.constraint !== undefined
  if (!replays && c.resumedIds.length === 0) return p
  const out: SamplingParams = { ...p }
  if (c.resumedIds.length > 0) out.draws = c.resumedIds.length
  if (!replays) return out
  if (p.repetitionPenalty !== undefined) out.promptIds = [...new Set(c.promptIds)]
  if (c.resumedIds.length > 0) out.generatedIds = [...c.resumedIds]
  if (p.minTokens !== undefined) {
    const held = new Set(p.stopTokenIds ?? [])
    if (!c.ignoreEos) for (const id of c.eosTokenIds) held.add(id)
    out.minTokensStopIds = [...held]
  }
  return out
}
