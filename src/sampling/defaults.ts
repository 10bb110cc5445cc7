/**
 * Sampling defaults from the model's generation_config.json, applied when a request leaves them out
 * (vLLM's --generation-config auto). Without that file, OpenAI's defaults hold.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SamplingParams } from './params.ts'

export type SamplingDefaults = Pick<SamplingParams, 'temperature' | 'topP' | 'topK'> & Pick<Required<SamplingParams>, 'repetitionPenalty' | 'minP'>

export function generationDefaults(modelDir: string): SamplingDefaults {
  const defaults = { temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1, minP: 0 }
  let gen: Record<string, unknown>
  try {
    gen = JSON.parse(readFileSync(join(modelDir, 'generation_config.json'), 'utf8')) as Record<string, unknown>
  } catch {
    return defaults
  }
  if (gen.do_sample === false) defaults.temperature = 0
  else if (typeof gen.temperature === 'number') defaults.temperature = gen.temperature
  if (typeof gen.top_p === 'number') defaults.topP = gen.top_p
  if (typeof gen.top_k === 'number') defaults.topK = gen.top_k
  // vLLM takes these two from generation_config.json as well.
  if (typeof gen.repetition_penalty === 'number' && gen.repetition_penalty > 0) defaults.repetitionPenalty = gen.repetition_penalty
  if (typeof gen.min_p === 'number' && gen.min_p >= 0 && gen.min_p <= 1) defaults.minP = gen.min_p
  return defaults
}
