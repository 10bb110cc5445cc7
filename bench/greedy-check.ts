/**
 * Whether the configurations generated the limit's greedy outputs on the check prompts. An fp32 one
 * must equal the fp32 limit's. Quantized weights move the logits, so a quantized configuration of
 * spanserve must equal the limit of its own quantization (the same quantized graph), and how far each
 * quantized one follows the fp32 limit is recorded rather than required: llama.cpp's Q8_0 and Q4_0
 * round other blocks than ONNX Runtime's MatMulNBits, so its tokens part from spanserve's sooner or later.
 */
import { CONFIG_QUANTIZATION, type ConfigName } from './options.ts'
import type { Agreement, MatchResult } from './results.ts'

function agreement(config: ConfigName, against: ConfigName, got: readonly string[], want: readonly string[]): Agreement {
  let identical = 0
  let share = 0
  for (const [k, w] of want.entries()) {
    const g = got[k] ?? ''
    let n = 0
    while (n < w.length && g[n] === w[n]) n++
    if (g === w) identical++
    share += w.length === 0 ? 1 : n / w.length
  }
  return { config, against, identical, prompts: want.length, prefixShare: share / Math.max(1, want.length) }
}

/** `texts`: each configuration's outputs on the check prompts; `reference`: the fp32 limit's. */
export function compareGreedy(model: string, reference: readonly string[], texts: ReadonlyMap<ConfigName, readonly string[]>): MatchResult {
  const result: MatchResult = { model, compared: [], prompts: reference.length, mismatched: [], details: [], agreement: [] }
  for (const [config, got] of texts) {
    const q = CONFIG_QUANTIZATION[config]
    let want: readonly string[] | undefined = reference
    let wantName: ConfigName = 'limit'
    if (q) {
      result.agreement!.push(agreement(config, 'limit', got, reference))
      const spanserve = texts.has(`limit-${q}`) ? (`limit-${q}` as const) : (`off-${q}` as const)
      want = config === spanserve ? undefined : texts.get(spanserve)
      wantName = spanserve
      if (config.startsWith('llamacpp')) {
        if (want) result.agreement!.push(agreement(config, spanserve, got, want))
        want = undefined
      }
    }
    if (!want) continue
    result.compared.push(config)
    const i = got.findIndex((t, k) => t !== want[k])
    if (i < 0) continue
    result.mismatched.push(config)
    result.details.push(`${config}, prompt ${i}: ${wantName} ${JSON.stringify(want[i]!.slice(0, 80))}… vs ${JSON.stringify(got[i]!.slice(0, 80))}…`)
  }
  return result
}
