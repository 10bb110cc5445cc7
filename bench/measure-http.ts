/**
 * What every HTTP configuration runs once its server is up: a warm-up and the greedy outputs of the
 * check prompts (for the same-tokens comparison). The levels themselves are run by bench/main.ts,
 * interleaved across configurations.
 */
import { LoadClient } from './load-client.ts'

export interface HttpPlan {
  prompts: readonly number[][]
  /** Prompts whose completions are compared across configurations. */
  checkPrompts: readonly number[][]
  maxTokens: number
  warmupRequests: number
}

/** Warm-up requests run this many at a time: the batch sizes of the measured levels, not one by one. */
export const WARMUP_CONCURRENCY = 16

/** A warmed-up client of `url`, and the completion text of each check prompt. */
export async function prepareHttp(url: string, plan: HttpPlan): Promise<{ client: LoadClient; checkTexts: string[] }> {
  const client = new LoadClient({ url, model: 'default' })
  await client.level(plan.prompts, Math.min(plan.maxTokens, 16), WARMUP_CONCURRENCY, plan.warmupRequests)
  const checkTexts: string[] = []
  for (const p of plan.checkPrompts) checkTexts.push((await client.complete(p, plan.maxTokens)).text)
  return { client, checkTexts }
}
