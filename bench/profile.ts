/**
 * Reads the V8 CPU profiles (--cpu-prof) that spanserve's processes wrote during a profiled run and
 * summarises each: which process it was, how busy it was, and its top functions by self time.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from '../harness/server.ts'

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface ProcessProfile {
  role: string
  /** Profiled wall time, ms. */
  wallMs: number
  /** Non-idle share of the wall time. */
  busy: number
  top: { fn: string; selfMs: number; share: number }[]
}

const ROLES: [string, string][] = [
  ['src/worker/main.ts', 'worker'],
  ['src/scheduler/main.ts', 'scheduler'],
  ['src/tokenizer/main.ts', 'tokenizer'],
  ['src/server/main.ts', 'server'],
]

function label(frame: CpuProfile['nodes'][number]['callFrame']): string {
  const name = frame.functionName || '(anonymous)'
  if (!frame.url) return `${name} (native)`
  const path = frame.url.startsWith('file://') ? relative(ROOT, new URL(frame.url).pathname) : frame.url
  return `${name} ${path.replace(/^node_modules\//, '~/')}:${frame.lineNumber + 1}`
}

export function summariseProfiles(dir: string, topN = 8): ProcessProfile[] {
  const out: ProcessProfile[] = []
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
    const byId = new Map(prof.nodes.map((n) => [n.id, n]))
    const urls = new Set(prof.nodes.map((n) => n.callFrame.url))
    const role = ROLES.find(([src]) => [...urls].some((u) => u.endsWith(src)))?.[1] ?? 'other'
    const self = new Map<string, number>()
    let idle = 0
    let total = 0
    for (let i = 0; i < prof.samples.length; i++) {
      const ms = (prof.timeDeltas[i] ?? 0) / 1000
      const node = byId.get(prof.samples[i]!)
      if (!node) continue
      total += ms
      if (node.callFrame.functionName === '(idle)') {
        idle += ms
        continue
      }
      const key = label(node.callFrame)
      self.set(key, (self.get(key) ?? 0) + ms)
    }
    const busyMs = total - idle
    const top = [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([fn, selfMs]) => ({ fn, selfMs, share: busyMs > 0 ? selfMs / busyMs : 0 }))
    out.push({ role, wallMs: total, busy: total > 0 ? busyMs / total : 0, top })
  }
  const order = ['server', 'tokenizer', 'scheduler', 'worker', 'other']
  return out.sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role))
}
