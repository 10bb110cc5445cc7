/** Starting one child process: the same Node, its loader flags, and its launch spec in the environment. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { CHILD_ENV, type LaunchSpec } from '../process/child.ts'

const ENTRIES = {
  tokenizer: fileURLToPath(new URL('../tokenizer/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../scheduler/main.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../worker/main.ts', import.meta.url)),
}

export function spawnChild(spec: LaunchSpec): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, ENTRIES[spec.role]], {
    env: { ...process.env, [CHILD_ENV]: JSON.stringify(spec) },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
}

/** The delay before starting a child again: growing when it keeps dying, so a crash loop does not spin. */
export function restartDelayMs(restarts: number): number {
  return Math.min(5000, 100 * 2 ** Math.min(Math.max(restarts - 1, 0), 6))
}
