/**
 * CPU time of processes by pid, read from /proc (Linux): /proc/PID/schedstat's time on CPU (ns), or
 * /proc/PID/stat's utime + stime (clock ticks) where schedstat is missing. Null where unreadable.
 * Threads are included (ONNX Runtime's pool, libuv's workers): a process's whole CPU use.
 */
import { readFileSync } from 'node:fs'

export function processCpuMs(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
  } catch {
    try {
      // Fields after the command name (which may hold spaces): utime is the 14th field, stime the 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100
    } catch {
      return null
    }
  }
}

/** Every process's CPU time by role. */
export function snapshot(pids: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [role, pid] of Object.entries(pids)) {
    const ms = processCpuMs(pid)
    if (ms !== null) out[role] = ms
  }
  return out
}

/** CPU ms each role used between two snapshots. */
export function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [role, ms] of Object.entries(after)) if (before[role] !== undefined) out[role] = ms - before[role]!
  return out
}
