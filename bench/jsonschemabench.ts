/**
 * JSONSchemaBench's sample (../shared/jsonschemabench, 19 schemas from each of its 8 datasets)
 * through a real server with the embedded model: per dataset, how many schemas are accepted, how
 * many outputs validate (ajv, each schema's own draft, ajv-formats), how many are refused (400
 * naming a keyword), how many were cut by max_tokens; and the cold compile cost, as the latency of
 * a max_tokens 1 request with the schema's first use (the worker compiles it then; includes the
 * server's rewrite and one sampled token). Prints a Markdown table.
 *
 *   node --import tsx bench/jsonschemabench.ts [--max-tokens 300] [--sample N]
 */
import { parseArgs } from 'node:util'
import { startServer } from '../harness/server.ts'
import { benchSchemas, runSchema } from '../harness/jsonschemabench.ts'

const { values } = parseArgs({ options: { 'max-tokens': { type: 'string', default: '300' }, sample: { type: 'string' } } })
const maxTokens = Number(values['max-tokens'])

interface Row {
  n: number
  accepted: number
  valid: number
  invalid: number
  refused: number
  length: number
  error: number
  compileMs: number[]
}

function pct(xs: number[], p: number): string {
  if (xs.length === 0) return '–'
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!.toFixed(0)
}

const server = await startServer()
const rows = new Map<string, Row>()
const problems: string[] = []
try {
  let all = benchSchemas()
  if (values.sample) all = all.filter((_, i) => i % Math.ceil(all.length / Number(values.sample)) === 0)
  for (const { dataset, file, schema } of all) {
    const row = rows.get(dataset) ?? { n: 0, accepted: 0, valid: 0, invalid: 0, refused: 0, length: 0, error: 0, compileMs: [] }
    rows.set(dataset, row)
    row.n++
    const cold = await runSchema(server.url, schema, 1)
    if (cold.outcome === 'refused' || cold.outcome === 'error') {
      row[cold.outcome]++
      if (cold.outcome === 'error') problems.push(`${dataset}/${file}: ${cold.detail}`)
      continue
    }
    row.accepted++
    row.compileMs.push(cold.ms)
    const run = await runSchema(server.url, schema, maxTokens)
    row[run.outcome === 'refused' ? 'error' : run.outcome]++
    if (run.outcome === 'invalid' || run.outcome === 'error') problems.push(`${dataset}/${file}: ${run.outcome} ${run.detail}`)
  }
} finally {
  await server.stop()
}

console.log(`| dataset | schemas | accepted | valid | invalid | length (max_tokens ${maxTokens}) | refused | error | cold compile p50 / p90 / max (ms) |`)
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
const total: Row = { n: 0, accepted: 0, valid: 0, invalid: 0, refused: 0, length: 0, error: 0, compileMs: [] }
for (const [d, r] of [...rows].sort()) {
  console.log(`| ${d} | ${r.n} | ${r.accepted} | ${r.valid} | ${r.invalid} | ${r.length} | ${r.refused} | ${r.error} | ${pct(r.compileMs, 50)} / ${pct(r.compileMs, 90)} / ${pct(r.compileMs, 100)} |`)
  for (const k of ['n', 'accepted', 'valid', 'invalid', 'refused', 'length', 'error'] as const) total[k] += r[k]
  total.compileMs.push(...r.compileMs)
}
console.log(
  `| all | ${total.n} | ${total.accepted} | ${total.valid} | ${total.invalid} | ${total.length} | ${total.refused} | ${total.error} | ${pct(total.compileMs, 50)} / ${pct(total.compileMs, 90)} / ${pct(total.compileMs, 100)} |`,
)
for (const p of problems) console.log(`- ${p.slice(0, 400)}`)
process.exit(total.invalid > 0 ? 1 : 0)
