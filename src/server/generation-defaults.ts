/**
 * Sampling defaults from the model's generation_config.json, applied when a request leaves them out
 * (vLLM's --generation-config auto). Without that file, OpenAI's defaults hold.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ServingInfo } from './routes/generate.ts'

export function generationDefaults(modelDir: string): ServingInfo['defaults'] {
  const defaults = { temperature: 1, topP: 1, topK: 0 }
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
  return defaults
}
