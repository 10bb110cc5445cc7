/** The results as a table (console and markdown), the ratios, and the verdicts. */
import { CONFIG_LABELS } from './options.ts'
import type { BenchResult, ConfigResult } from './results.ts'
import type { LevelResult } from './stats.ts'
import { verdictWord } from './targets.ts'

const f1 = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(1))
const f0 = (v: number): string => (Number.isNaN(v) ? '–' : v.toFixed(0))

export const COLUMNS = ['model', 'configuration', 'conc', 'req', 'tok/s', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'E2E p50', 'E2E p99', 'tok/s/req', 'vs limit'] as const

function row(c: ConfigResult, l: LevelResult, limit: LevelResult | undefined): string[] {
  return [
    c.model,
    CONFIG_LABELS[c.config],
    String(l.concurrency),
    String(l.requests),
    f0(l.tokensPerSec),
    f1(l.ttftP50),
    f1(l.ttftP99),
    f1(l.itlP50),
    f1(l.itlP99),
    f0(l.e2eP50),
    f0(l.e2eP99),
    f0(l.perRequestTokS),
    limit ? `${(l.tokensPerSec / limit.tokensPerSec).toFixed(2)}×` : '–',
  ]
}

export function tableRows(result: BenchResult): string[][] {
  const rows: string[][] = []
  for (const c of result.configs) {
    if (c.skipped) continue
    const limit = result.configs.find((x) => x.config === 'limit' && x.model === c.model && !x.skipped)
    for (const l of c.levels)
      rows.push(
        row(
          c,
          l,
          limit?.levels.find((x) => x.concurrency === l.concurrency),
        ),
      )
  }
  return rows
}

export function textTable(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: readonly string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  const align = header.map((_, i) => (i < 2 ? '---' : '---:'))
  return [header, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n')
}

export function consoleReport(result: BenchResult): string {
  const out: string[] = []
  out.push(`Latencies in ms; tok/s: generated tokens over the level's wall time, all requests; vs limit: tok/s ratio at the same concurrency.`)
  out.push(textTable(COLUMNS, tableRows(result)))
  for (const c of result.configs.filter((x) => x.skipped)) out.push(`left out: ${CONFIG_LABELS[c.config]} [${c.model}]: ${c.skipped}`)
  for (const c of result.configs.filter((x) => x.failed)) out.push(`stopped: ${CONFIG_LABELS[c.config]} [${c.model}]: ${c.failed}`)
  for (const c of result.configs.filter((x) => x.spans !== undefined)) out.push(`OTLP receiver [${c.model}]: ${c.spans} spans in ${c.exportRequests} export requests`)
  out.push('')
  for (const m of result.matches) {
    const ok = m.mismatched.length === 0
    out.push(`same greedy tokens [${m.model}], ${m.prompts} prompts, limit vs ${m.compared.join(', ')}: ${ok ? 'MATCH' : `DIFFER (${m.mismatched.join(', ')})`}`)
    for (const d of m.details) out.push(`  ${d}`)
  }
  out.push('')
  out.push('targets:')
  for (const v of result.verdicts) out.push(`  ${verdictWord(v).padEnd(7)} ${v.target}: ${v.measured}`)
  if (result.tracingMicro) {
    out.push('')
    out.push('tracing module microbenchmark (bench/tracing-slice.ts), µs:')
    for (const r of result.tracingMicro.rows) out.push(`  ${r.case.padEnd(56)} ${r.us.toFixed(3)}`)
  }
  const cpu = cpuRows(result)
  if (cpu.rows.length > 0) {
    out.push('')
    out.push('CPU time per process, ms per 1,000 generated tokens (bench/proc-cpu.ts); cores busy = all / wall:')
    out.push(cpu.header.join('\t'))
    for (const r of cpu.rows) out.push(r.join('\t'))
  }
  for (const [title, prof] of [
    ['tracing off', result.profile],
    ['tracing on, level 3', result.profileOn],
  ] as const) {
    if (!prof) continue
    out.push('')
    out.push(`CPU profile of spanserve (${title}, concurrency 16), self time:`)
    for (const p of prof) {
      out.push(`  ${p.role}: busy ${(p.busy * 100).toFixed(0)}% of ${(p.wallMs / 1000).toFixed(1)} s`)
      for (const t of p.top) out.push(`    ${(t.share * 100).toFixed(1).padStart(5)}%  ${t.selfMs.toFixed(0).padStart(6)} ms  ${t.fn}`)
    }
  }
  return out.join('\n')
}

const CPU_ROLES = ['server', 'tokenizer', 'scheduler', 'worker', 'sink', 'bench'] as const

/** A process key (worker-0-1, scheduler-0, …) to its role. */
function cpuRole(key: string): string {
  return key.split('-')[0]!
}

/**
 * CPU time per process role, ms per 1,000 generated tokens, and the cores in use over the level's
 * wall time (over all repeats): one row per configuration and level that measured it.
 */
export function cpuRows(result: BenchResult): { header: string[]; rows: string[][] } {
  const header = ['model', 'configuration', 'conc', ...CPU_ROLES, 'all', 'cores busy']
  const rows: string[][] = []
  for (const c of result.configs) {
    for (const l of c.levels) {
      if (!l.cpuMs) continue
      const tokens = l.cpuTokens ?? (l.tokensPerSec * l.wallMs) / 1000
      const wall = l.cpuWallMs ?? l.wallMs
      const byRole = new Map<string, number>()
      for (const [k, ms] of Object.entries(l.cpuMs)) byRole.set(cpuRole(k), (byRole.get(cpuRole(k)) ?? 0) + ms)
      const all = [...byRole.values()].reduce((a, b) => a + b, 0)
      const per = (ms: number | undefined): string => (ms === undefined ? '' : ((ms * 1000) / tokens).toFixed(0))
      rows.push([c.model, CONFIG_LABELS[c.config], String(l.concurrency), ...CPU_ROLES.map((r) => per(byRole.get(r))), per(all), (all / wall).toFixed(2)])
    }
  }
  return { header, rows }
}
