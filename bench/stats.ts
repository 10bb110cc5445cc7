/** Percentiles and the per-level summary every configuration reports in the same shape. */

/** Nearest-rank percentile of an unsorted sample; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

/** The median of an unsorted sample, the mean of the middle two for an even count; NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const m = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  let s = 0
  for (const v of values) s += v
  return s / values.length
}

/** What one request measured, in milliseconds from the moment it was sent. */
export interface RequestSample {
  ttftMs: number
  e2eMs: number
  /** Tokens generated (usage.completion_tokens, or the count the engine reports). */
  tokens: number
  /** Gaps between successive streamed tokens. */
  itlMs: number[]
}

/** One configuration at one concurrency. */
export interface LevelResult {
  concurrency: number
  requests: number
  /** Generated tokens over the level's wall time, all requests together. */
  tokensPerSec: number
  wallMs: number
  ttftP50: number
  ttftP99: number
  itlP50: number
  itlP99: number
  e2eP50: number
  e2eP99: number
  /** Median of each request's own tokens / e2e. */
  perRequestTokS: number
  /** limit only: one sequence's prefill time, the floor of time to first token. */
  prefillP50?: number
  /** --repeats: every repeat's tok/s, in run order (repeat i of every configuration ran in the same rotation). */
  repeatsTokS?: number[]
  /** --repeats: every repeat's TTFT p50, and (limit) prefill p50, in run order. */
  repeatsTtftP50?: number[]
  repeatsPrefillP50?: number[]
  /** CPU time each process used during the level, ms, by role (bench/proc-cpu.ts). */
  cpuMs?: Record<string, number>
  /** With repeats, cpuMs is summed over all of them, over these tokens and this wall time. */
  cpuTokens?: number
  cpuWallMs?: number
}

export function summarise(concurrency: number, samples: readonly RequestSample[], wallMs: number, extra: Partial<LevelResult> = {}): LevelResult {
  const tokens = samples.reduce((s, r) => s + r.tokens, 0)
  const itl = samples.flatMap((r) => r.itlMs)
  return {
    concurrency,
    requests: samples.length,
    tokensPerSec: (tokens * 1000) / wallMs,
    wallMs,
    ttftP50: percentile(
      samples.map((r) => r.ttftMs),
      50,
    ),
    ttftP99: percentile(
      samples.map((r) => r.ttftMs),
      99,
    ),
    itlP50: percentile(itl, 50),
    itlP99: percentile(itl, 99),
    e2eP50: percentile(
      samples.map((r) => r.e2eMs),
      50,
    ),
    e2eP99: percentile(
      samples.map((r) => r.e2eMs),
      99,
    ),
    perRequestTokS: percentile(
      samples.map((r) => (r.tokens * 1000) / r.e2eMs),
      50,
    ),
    ...extra,
  }
}
