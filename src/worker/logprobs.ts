/**
 * Log-probabilities for a sequence that asks for them (SamplingParams.logprobs / promptLogprobs), from
 * the model's raw logits: log_softmax of the row, before temperature, penalties, logit bias and
 * grammar masks (vLLM's default, "raw_logprobs"). A sequence that does not ask has no recorder, so it
 * pays nothing. Cost per token: one pass over the row for the top-k (whose best is the row's max) and
 * one for the sum of exp.
 */
import type { PromptLogprobs, TokenLogprobs } from '../ipc/messages.ts'

/** What JSON can carry for a token the model gives no probability: vLLM's stand-in for -inf. */
const FLOOR = -9999

function finite(v: number): number {
  return v > FLOOR ? v : FLOOR
}

/** 2^-n for n in [0, 1075): the exponent part of sumExp's exp. */
const POW2_NEG = Float64Array.from({ length: 1075 }, (_, n) => 2 ** -n)

/**
 * Σ exp(row - max) over [offset, offset + vocab), where max is the row's largest value. exp is
 * 2^n · exp(r) with |r| ≤ ln2 / 2 and exp(r) a 7th-degree Taylor polynomial (relative error under
 * 1e-8, far below a float32 logit's own): twice as fast as Math.exp, which was most of a
 * top_logprobs request's cost in the worker. Terms under 2^-1074 are 0, as in Math.exp.
 */
function sumExp(logits: Float32Array, offset: number, vocab: number, max: number): number {
  let sum = 0
  for (let i = 0; i < vocab; i++) {
    const t = (logits[offset + i]! - max) * Math.LOG2E
    if (!(t > -1074)) continue
    const n = Math.round(t)
    const r = (t - n) * Math.LN2
    sum += (1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040)))))))) * POW2_NEG[-n]!
  }
  return sum
}

function rowMax(logits: Float32Array, offset: number, vocab: number): number {
  let max = -Infinity
  for (let i = 0; i < vocab; i++) if (logits[offset + i]! > max) max = logits[offset + i]!
  return max
}

/** log Σ exp(row) over [offset, offset + vocab); `max`, the row's largest value, when known. */
export function logSumExp(logits: Float32Array, offset: number, vocab: number, max = rowMax(logits, offset, vocab)): number {
  if (max === -Infinity || max === Infinity) return max
  return max + Math.log(sumExp(logits, offset, vocab, max))
}

/**
 * The k best ids of the row, best first, ties by lower id: a sorted k-entry list, where most entries
 * fail the one comparison with its last (k ≤ 20).
 */
export function topIds(logits: Float32Array, offset: number, vocab: number, k: number): Int32Array {
  const ids = new Int32Array(Math.max(0, Math.min(k, vocab)))
  let size = 0
  for (let i = 0; i < vocab && ids.length > 0; i++) {
    const v = logits[offset + i]!
    if (size === ids.length && !(v > logits[offset + ids[size - 1]!]!)) continue
    let j = size === ids.length ? size - 1 : size++
    while (j > 0 && logits[offset + ids[j - 1]!]! < v) {
      ids[j] = ids[j - 1]!
      j--
    }
    ids[j] = i
  }
  return ids
}

/**
 * One raw row scored: `token`'s log-probability and the k best ids' (float32, as the wire carries
 * them, so the token's value equals its own entry in the top list). The best id is the row's max:
 * the log-sum-exp needs no pass of its own for it.
 */
function scoreRow(logits: Float32Array, offset: number, vocab: number, token: number, k: number): TokenLogprobs {
  const ids = topIds(logits, offset, vocab, k)
  const lse = logSumExp(logits, offset, vocab, ids.length > 0 ? logits[offset + ids[0]!]! : undefined)
  const topLogprobs = new Float32Array(ids.length)
  for (let i = 0; i < ids.length; i++) topLogprobs[i] = finite(logits[offset + ids[i]!]! - lse)
  return { logprob: Math.fround(finite(logits[offset + token]! - lse)), topIds: ids, topLogprobs }
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
    const entry = scoreRow(logits, offset, vocab, token, this.top)
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
      const scored = scoreRow(row, offset, vocab, token, k)
      p.logprobs.push(scored.logprob)
      p.topIds.push(Array.from(scored.topIds))
      p.topLogprobs.push(Array.from(scored.topLogprobs))
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
