/**
 * The throughput chart, written by hand: tokens/s against concurrency (log2 axis), one line per
 * configuration, one panel per model.
 */
import { CONFIG_LABELS, type ConfigName } from './options.ts'
import type { ConfigResult } from './results.ts'

const COLOURS: Record<ConfigName, string> = {
  limit: '#444444',
  limitspin: '#bbbbbb',
  baselimit: '#999999',
  off: '#1f77b4',
  lockstep: '#ff7f0e',
  spin: '#8c564b',
  steps4: '#17becf',
  base: '#9ecae1',
  baseon: '#c5e8b7',
  on: '#2ca02c',
  onlive: '#bcbd22',
  on2: '#98df8a',
  fr: '#2ca02c',
  dp2: '#9467bd',
  tjs: '#d62728',
  llamacpp: '#e377c2',
  // Quantized: the fp32 configuration's hue, darker for int8, lighter for int4.
  'limit-int8': '#222222',
  'limit-int4': '#777777',
  'off-int8': '#0d4a75',
  'off-int4': '#6baed6',
  'llamacpp-q8': '#a3186f',
  'llamacpp-q4': '#f7b6d2',
}
const DASH: Record<ConfigName, string> = {
  limit: '6 4',
  limitspin: '6 4',
  baselimit: '6 4',
  off: '',
  lockstep: '4 2',
  spin: '4 2',
  steps4: '4 2',
  base: '',
  baseon: '2 3',
  on: '2 3',
  onlive: '1 2',
  on2: '2 3',
  fr: '6 2',
  dp2: '8 2 2 2',
  tjs: '',
  llamacpp: '',
  'limit-int8': '6 4',
  'limit-int4': '6 4',
  'off-int8': '',
  'off-int4': '',
  'llamacpp-q8': '',
  'llamacpp-q4': '',
}
const W = 420
const H = 300
const M = { left: 64, right: 16, top: 36, bottom: 48 }

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** A round step of about a fifth of `max`: 1, 2 or 5 times a power of ten. */
function tickStep(max: number): number {
  const raw = max / 5
  const p = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw)!
}

function panel(model: string, configs: readonly ConfigResult[], x0: number): string {
  const runs = configs.filter((c) => c.model === model && !c.skipped && c.levels.length > 0)
  const concs = [...new Set(runs.flatMap((c) => c.levels.map((l) => l.concurrency)))].sort((a, b) => a - b)
  const maxY = Math.max(1, ...runs.flatMap((c) => c.levels.map((l) => l.tokensPerSec)))
  const step = tickStep(maxY)
  const top = Math.ceil(maxY / step) * step
  const pw = W - M.left - M.right
  const ph = H - M.top - M.bottom
  const lo = Math.log2(concs[0] ?? 1)
  const hi = Math.log2(concs.at(-1) ?? 2)
  const x = (c: number) => x0 + M.left + (hi === lo ? pw / 2 : ((Math.log2(c) - lo) / (hi - lo)) * pw)
  const y = (v: number) => M.top + ph - (v / top) * ph
  const parts: string[] = []
  parts.push(`<text x="${x0 + M.left + pw / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(model)} model</text>`)
  for (let v = 0; v <= top + 1e-9; v += step) {
    parts.push(`<line x1="${x0 + M.left}" x2="${x0 + M.left + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#e0e0e0"/>`)
    parts.push(`<text x="${x0 + M.left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`)
  }
  for (const c of concs) {
    parts.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#000"/>`)
    parts.push(`<text x="${x(c)}" y="${M.top + ph + 18}" text-anchor="middle">${c}</text>`)
  }
  parts.push(`<line x1="${x0 + M.left}" x2="${x0 + M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#000"/>`)
  parts.push(`<line x1="${x0 + M.left}" x2="${x0 + M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#000"/>`)
  parts.push(`<text x="${x0 + M.left + pw / 2}" y="${H - 10}" text-anchor="middle">concurrency</text>`)
  parts.push(`<text transform="translate(${x0 + 16} ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">tokens/s</text>`)
  for (const run of runs) {
    const pts = run.levels.map((l) => `${x(l.concurrency).toFixed(1)},${y(l.tokensPerSec).toFixed(1)}`)
    const colour = COLOURS[run.config]
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${colour}" stroke-width="2"${DASH[run.config] ? ` stroke-dasharray="${DASH[run.config]}"` : ''}/>`)
    for (const p of pts) {
      const [px, py] = p.split(',')
      parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${colour}"/>`)
    }
  }
  return parts.join('\n')
}

/** Legend entries are laid out in rows under the panels: labels run to about 50 characters. */
const LEGEND_ITEM_W = 340
const LEGEND_ROW_H = 20

export function throughputSvg(configs: readonly ConfigResult[], models: readonly string[]): string {
  const width = Math.max(W * models.length, 20 + 2 * LEGEND_ITEM_W)
  const perRow = Math.max(1, Math.floor((width - 20) / LEGEND_ITEM_W))
  const legendY = H + 8
  const names = [...new Set(configs.filter((c) => !c.skipped).map((c) => c.config))]
  const legend = names
    .map((name, i) => {
      const lx = 20 + (i % perRow) * LEGEND_ITEM_W
      const ly = legendY + Math.floor(i / perRow) * LEGEND_ROW_H
      return (
        `<line x1="${lx}" x2="${lx + 28}" y1="${ly + 10}" y2="${ly + 10}" stroke="${COLOURS[name]}" stroke-width="2"${DASH[name] ? ` stroke-dasharray="${DASH[name]}"` : ''}/>` +
        `<text x="${lx + 34}" y="${ly + 14}">${esc(CONFIG_LABELS[name])}</text>`
      )
    })
    .join('\n')
  const rows = Math.ceil(names.length / perRow)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 16 + rows * LEGEND_ROW_H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...models.map((m, i) => panel(m, configs, i * W)),
    legend,
    '</svg>',
    '',
  ].join('\n')
}
