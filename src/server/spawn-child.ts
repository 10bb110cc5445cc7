/** Starting one child process: the same Node, its loader flags, and its launch spec in the environment. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { CHILD_ENV, type LaunchSpec } from '../process/child.ts'

const ENTRIES = {
  tokenizer: fileURLToPath(new URL('../tokenizer/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../scheduler/main.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../worker/main.ts', import.meta.url)),
}

/** Variables a child must not inherit: it has no use for them, and its environment is readable. */
const WITHHELD = ['SPANSERVE_API_KEY']

/**
 * glibc gives each thread that allocates its own heap and keeps what is freed there: ONNX Runtime's
 * threads allocating per step made a worker's RSS grow to several times its need. Two heaps keep
 * freed memory reusable by every thread. An operator's own setting wins.
 */
const WORKER_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }

export function spawnChild(spec: LaunchSpec): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...(spec.role === 'worker' ? WORKER_MALLOC_ENV : {}), ...process.env, [CHILD_ENV]: JSON.stringify(spec) }
  for (const name of WITHHELD) delete env[name]
  return spawn(process.execPath, [...process.execArgv, ENTRIES[spec.role]], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
}

/** The delay before starting a child again: growing when it keeps dying, so a crash loop does not spin. */
export function restartDelayMs(restarts: number): number {
  return Math.min(5000, 100 * 2 ** Math.min(Math.max(restarts - 1, 0), 6))
}
