/**
 * Runs the tracing module's microbenchmark (bench/tracing-slice.ts) in its own process, so its
 * timings are not disturbed by this one's state, and reads its table back.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from '../harness/server.ts'

export interface TracingMicroRow {
  case: string
  us: number
}

export interface TracingMicro {
  rows: TracingMicroRow[]
  /** The script's closing lines that are not table rows (dropped spans). */
  notes: string[]
}

export async function runTracingMicro(): Promise<TracingMicro> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/tracing-slice.ts')], { cwd: ROOT, timeout: 300_000 })
  const rows: TracingMicroRow[] = []
  const notes: string[] = []
  for (const line of stdout.split('\n').slice(1)) {
    const m = /^(.*?)\s+(-?[\d.]+)$/.exec(line.trim())
    if (m && !m[1]!.trim().endsWith(':')) rows.push({ case: m[1]!.trim(), us: Number(m[2]) })
    else if (line.trim()) notes.push(line.trim())
  }
  return { rows, notes }
}
