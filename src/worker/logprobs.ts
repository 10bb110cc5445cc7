/**
 * Log-probabilities for a sequence that asks for them (SamplingParams.logprobs / promptLogprobs), from
 * the model's raw logits: log_softmax of the row, before temperature, penalties, logit bias and
 * grammar masks (vLLM's default, "raw_logprobs"). A sequence that does not ask has no recorder, so it
 * pays nothing. Cost per token: two passes over the row (max, sum of exp) and one for the top-k.
 */
import type { PromptLogprobs, TokenLogprobs } from '../ipc/messages.ts'

/** What JSON can carry for a token the model gives no probability: vLLM's stand-in for -inf. */
const FLOOR = -9999

function finite(v: number): number {
  return v > FLOOR ? v : FLOOR
}

/** log Σ exp(row) over [offset, offset + vocab). */
export function logSumExp(logits: Float32Array, offset: number, vocab: number): number {
  let max = -Infinity
  for (let i = 0; i < vocab; i++) if (logits[offset + i]! > max) max = logits[offset + i]!
  if (max === -Infinity) return max
  let sum = 0
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i]! - max)
  return max + Math.log(sum)
}

/**
 * The k best ids of the row, best first, ties by lower id: a sorted k-entry list, where most entries
 * fail the one comparison with its last (k ≤ 20).
 */
export function topIds(logits: Float32Array, offset: number, vocab: number, k: number): number[] {
  const ids: number[] = []
  if (k <= 0) return ids
  for (let i = 0; i < vocab; i++) {
    const v = logits[offset + i]!
    if (ids.length === k && !(v > logits[offset + ids[k - 1]!]!)) continue
    let j = ids.length === k ? k - 1 : ids.length
    while (j > 0 && logits[offset + ids[j - 1]!]! < v) {
      ids[j] = ids[j - 1]!
      j--
    }
    ids[j] = i
  }
  return ids
}

export class LogprobsRecorder {
  /** One entry per token sampled and not yet taken, in order. */
  private readonly sampled: TokenLogprobs[] = []
  private prompt: PromptLogprobs | null = null
  /** The last row of a prompt chunk that was not the prompt's last: it scores the next chunk's first token. */
  private carry: Float32Array | null = null

  constructor(
    private readonly top: number,
    private readonly promptTop: number | undefined,
  ) {}

  get wantsPrompt(): boolean {
    return this.promptTop !== undefined
  }

  /** Record the sampled `token` of this raw row. */
  token(logits: Float32Array, offset: number, vocab: number, token: number): void {
    const lse = logSumExp(logits, offset, vocab)
    const ids = topIds(logits, offset, vocab, this.top)
    const entry: TokenLogprobs = { logprob: finite(logits[offset + token]! - lse), topIds: ids, topLogprobs: ids.map((id) => finite(logits[offset + id]! - lse)) }
    if (this.prompt !== null) {
      entry.prompt = this.prompt
      this.prompt = null
    }
    this.sampled.push(entry)
  }

  /**
   * A prompt chunk ran: `logits` holds one raw row per chunk position ([tokens.length, vocab]); row j
   * scores token j + 1. Position 0 of the prompt has no logprob.
   */
  promptChunk(logits: Float32Array, vocab: number, tokens: Int32Array, start: number, last: boolean): void {
    const k = this.promptTop
    if (k === undefined) return
    const p = (this.prompt ??= { logprobs: [], topIds: [], topLogprobs: [] })
    const score = (row: Float32Array, offset: number, token: number) => {
      const lse = logSumExp(row, offset, vocab)
      const ids = topIds(row, offset, vocab, k)
      p.logprobs.push(finite(row[offset + token]! - lse))
      p.topIds.push(ids)
      p.topLogprobs.push(ids.map((id) => finite(row[offset + id]! - lse)))
    }
    if (start === 0) {
      p.logprobs.push(null)
      p.topIds.push([])
      p.topLogprobs.push([])
    } else if (this.carry !== null) score(this.carry, 0, tokens[0]!)
    for (let j = 0; j + 1 < tokens.length; j++) score(logits, j * vocab, tokens[j + 1]!)
    this.carry = last ? null : logits.slice((tokens.length - 1) * vocab, tokens.length * vocab)
  }

  /** The oldest recorded token's logprobs (null: none left). */
  take(): TokenLogprobs | null {
    return this.sampled.shift() ?? null
  }
}

/** The recorder a sequence with these sampling params needs, or null when it asks for no logprobs. */
export function logprobsRecorder(p: { logprobs?: number; promptLogprobs?: number }): LogprobsRecorder | null {
  if (p.logprobs === undefined && p.promptLogprobs === undefined) return null
  return new LogprobsRecorder(p.logprobs ?? 0, p.promptLogprobs)
}
