/** The performance targets, each judged on figures from one run. */
import type { ConfigName } from './options.ts'
import type { BenchResult, ConfigResult, Verdict } from './results.ts'
import type { LevelResult } from './stats.ts'

function level(configs: readonly ConfigResult[], config: ConfigName, model: string, concurrency: number): LevelResult | undefined {
  return configs.find((c) => c.config === config && c.model === model && !c.skipped)?.levels.find((l) => l.concurrency === concurrency)
}

/** A median ratio (or difference) of paired repeats, its range, and how many repeats it is over. */
export interface Spread {
  r: number
  lo: number
  hi: number
  n: number
}

/**
 * a's tok/s over b's: with repeats, the median of the paired ratios (repeat i of both ran in the same
 * rotation) and their range; else the one ratio.
 */
export function levelRatio(a: LevelResult, b: LevelResult): Spread {
  const xs = a.repeatsTokS
  const ys = b.repeatsTokS
  if (xs && ys && xs.length === ys.length && xs.length > 1) return spread(xs.map((x, i) => x / ys[i]!))
  const r = a.tokensPerSec / b.tokensPerSec
  return { r, lo: r, hi: r, n: 1 }
}

/** Median, least and greatest of paired per-repeat figures. */
function spread(values: readonly number[]): Spread {
  const v = [...values].sort((p, q) => p - q)
  const mid = v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2
  return { r: mid, lo: v[0]!, hi: v[v.length - 1]!, n: v.length }
}

/** Three decimals: a verdict is judged on the exact ratio, and 0.965 must not read as 0.97. */
export function formatRatio(x: Spread): string {
  return x.n > 1 ? `${x.r.toFixed(3)}× (${x.lo.toFixed(3)}–${x.hi.toFixed(3)} over ${x.n} repeats)` : `${x.r.toFixed(3)}×`
}

function ratio(name: string, a: LevelResult | undefined, b: LevelResult | undefined, min: number, what: string): Verdict {
  if (!a || !b) return { target: name, met: null, measured: 'not measured in this run' }
  const x = levelRatio(a, b)
  return { target: name, met: x.r >= min, measured: `${formatRatio(x)} (${what}: ${a.tokensPerSec.toFixed(0)} vs ${b.tokensPerSec.toFixed(0)} tok/s)` }
}

export function judge(result: Pick<BenchResult, 'configs' | 'models'>): Verdict[] {
  const out: Verdict[] = []
  const cs = result.configs
  for (const { preset } of result.models) {
    const m = `[${preset}]`
    const off1 = level(cs, 'off', preset, 1)
    const lim1 = level(cs, 'limit', preset, 1)
    out.push(ratio(`${m} spanserve tracing off ≥ 0.90 × limit tok/s at concurrency 1`, off1, lim1, 0.9, 'off vs limit'))
    // The same target with the operator's switch for it, where it was run.
    const steps1 = level(cs, 'steps4', preset, 1)
    if (steps1) out.push(ratio(`${m} spanserve tracing off, --num-continuous-decode-steps 4, ≥ 0.90 × limit tok/s at concurrency 1`, steps1, lim1, 0.9, 'steps4 vs limit'))
    if (off1 && lim1?.prefillP50 !== undefined) {
      out.push(ttftVerdict(`${m} TTFT p50 at concurrency 1 ≤ limit prefill p50 + 2 ms`, off1, lim1))
    } else {
      out.push({ target: `${m} TTFT p50 at concurrency 1 ≤ limit prefill p50 + 2 ms`, met: null, measured: 'not measured in this run' })
    }
    if (preset === 'default') {
      const v = ratio(`${m} continuous batching: spanserve at concurrency 16 ≥ 5 × its concurrency 1 tok/s`, level(cs, 'off', preset, 16), off1, 5, 'c16 vs c1')
      // What batching gives on this hardware with no gateway at all bounds what spanserve can show.
      const lim16 = level(cs, 'limit', preset, 16)
      if (v.met !== null && lim16 && lim1) v.measured += `; the limit's own c16 vs c1 in this run: ${formatRatio(levelRatio(lim16, lim1))}`
      out.push(v)
    }
    for (const n of [16, 64]) {
      out.push(ratio(`${m} tracing on ≥ 0.97 × tracing off tok/s at concurrency ${n}`, level(cs, 'on', preset, n), level(cs, 'off', preset, n), 0.97, 'on vs off'))
    }
    // The same target at the default trace level, where it was run.
    for (const n of [16, 64]) {
      const on2 = level(cs, 'on2', preset, n)
      if (on2) out.push(ratio(`${m} tracing on at level 2 (the default) ≥ 0.97 × tracing off tok/s at concurrency ${n}`, on2, level(cs, 'off', preset, n), 0.97, 'on2 vs off'))
    }
    out.push(ratio(`${m} spanserve ≥ 3 × transformers.js tok/s at concurrency 16`, level(cs, 'off', preset, 16), level(cs, 'tjs', preset, 16), 3, 'spanserve vs transformers.js'))
  }
  return out
}

/**
 * TTFT over the limit's prefill: with repeats, the median of the paired differences (repeat i of both
 * ran in the same rotation), as for the ratios; a p50 of one repeat's few requests is noisy.
 */
function ttftVerdict(target: string, off: LevelResult, limit: LevelResult): Verdict {
  const t = off.repeatsTtftP50
  const p = limit.repeatsPrefillP50
  const fmt = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)} ms`
  if (t && p && t.length === p.length && t.length > 1) {
    const d = spread(t.map((x, i) => x - p[i]!))
    return {
      target,
      met: d.r <= 2,
      measured: `${fmt(d.r)} (${fmt(d.lo)} to ${fmt(d.hi)} over ${d.n} repeats; median repeat: TTFT ${off.ttftP50.toFixed(2)} ms, prefill ${limit.prefillP50!.toFixed(2)} ms)`,
    }
  }
  const over = off.ttftP50 - limit.prefillP50!
  return { target, met: over <= 2, measured: `${fmt(over)} (TTFT ${off.ttftP50.toFixed(2)} ms, prefill ${limit.prefillP50!.toFixed(2)} ms)` }
}

export function verdictWord(v: Verdict): string {
  return v.met === null ? 'n/a' : v.met ? 'met' : 'NOT MET'
}
