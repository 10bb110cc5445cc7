/**
 * The logit adjustments of OpenAI's and vLLM's sampling parameters, in vLLM's order: min_tokens and
 * logit_bias, then repetition_penalty, frequency_penalty and presence_penalty. Each touches only the
 * tokens it names (biased ids, tokens seen so far), never the whole vocabulary.
 */
import type { SamplingParams } from '../sampling/params.ts'
import type { LogitsProcessor } from './logits-processor.ts'

export class Penalties implements LogitsProcessor {
  private readonly presence: number
  private readonly frequency: number
  private readonly repetition: number
  private readonly minTokens: number
  private readonly heldBack: readonly number[]
  private readonly bias: readonly [number, number][]
  /** Generated tokens and how often each came (frequency and presence penalties). */
  private readonly counts = new Map<number, number>()
  /** Tokens of the prompt or generated so far (repetition penalty). */
  private readonly seen: Set<number> | null
  private generated = 0

  constructor(p: SamplingParams) {
    this.presence = p.presencePenalty ?? 0
    this.frequency = p.frequencyPenalty ?? 0
    this.repetition = p.repetitionPenalty ?? 1
    this.minTokens = p.minTokens ?? 0
    this.heldBack = p.minTokensStopIds ?? []
    this.bias = p.logitBias ?? []
    this.seen = this.repetition !== 1 ? new Set(p.promptIds ?? []) : null
  }

  apply(logits: Float32Array, offset: number, vocab: number): void {
    if (this.generated < this.minTokens) {
      for (const id of this.heldBack) if (id < vocab) logits[offset + id] = -Infinity
    }
    for (const [id, b] of this.bias) if (id < vocab) logits[offset + id] += b
    if (this.seen !== null) {
      const r = this.repetition
      for (const id of this.seen) {
        if (id >= vocab) continue
        const l = logits[offset + id]!
        logits[offset + id] = l > 0 ? l / r : l * r
      }
    }
    if (this.presence !== 0 || this.frequency !== 0) {
      for (const [id, n] of this.counts) if (id < vocab) logits[offset + id] -= this.frequency * n + this.presence
    }
  }

  accept(token: number): void {
    this.generated++
    if (this.presence !== 0 || this.frequency !== 0) this.counts.set(token, (this.counts.get(token) ?? 0) + 1)
    this.seen?.add(token)
  }
}
