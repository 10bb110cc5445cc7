/** Starting one child process: the same Node, its loader flags, and its launch spec in the environment. */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { CHILD_ENV, type LaunchSpec } from '../../process/child.ts'

const ENTRIES = {
  tokenizer: fileURLToPath(new URL('../../tokenizer/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../../scheduler/main.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../../worker/main.ts', import.meta.url)),
}

/** Variables a child must not inherit: it has no use for them, and its environment is readable. */
const WITHHELD = ['SPANSERVE_API_KEY', 'SPANSERVE_ADMIN_API_KEY', 'SPANSERVE_API_KEY_FILE', 'SPANSERVE_ADMIN_API_KEY_FILE']

/**
 * glibc gives each thread that allocates its own heap and keeps what is freed there: ONNX Runtime's
 * threads allocating per step made a worker's RSS grow to several times its need. Two heaps keep
 * freed memory reusable by every thread. And glibc asks for transparent huge pages for what it maps
 * (glibc >= 2.35; ignored elsewhere): the KV blocks the prefix cache fills are fresh memory for every
 * new prompt until the cache is full, and faulting them in 4 KiB at a time cost the worker 4% of
 * tokens/s on distinct prompts (page faults 1,703 -> 197 per 1,000 tokens). An operator's own
 * settings win.
 */
const WORKER_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }

/**
 * V8's limit on its old generation starts small and follows the worker's small JavaScript heap,
 * while every decode step allocates megabytes of ONNX Runtime output buffers: under load V8 ran a
 * full mark-compact every ~35 ms (`--trace-gc`: 49 per 8,192 tokens at concurrency 16), marking on
 * its helper threads about 100 µs of CPU per generated token, taken from ONNX Runtime's threads.
 * Starting the limit at 128 MB made them rare (docs/benchmarks.md, "Garbage collection in the
 * worker"). The operator's own value among the server's Node flags wins.
 */
const WORKER_NODE_ARGS: readonly string[] = ['--initial-old-space-size=128']

function nodeArgs(role: LaunchSpec['role']): string[] {
  const inherited = process.execArgv
  if (role !== 'worker') return inherited
  const own = (arg: string) => inherited.some((a) => a.split('=')[0] === arg.split('=')[0])
  return [...inherited, ...WORKER_NODE_ARGS.filter((a) => !own(a))]
}

/**
 * What supervision needs of a child process (a ChildProcess is one): tests script children through
 * it with no process behind them.
 */
export interface ChildHandle {
  readonly pid?: number | undefined
  readonly exitCode: number | null
  readonly signalCode: NodeJS.Signals | null
  kill(signal: NodeJS.Signals): boolean
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
}

/** Starts a child from its launch spec. */
export type SpawnChild = (spec: LaunchSpec) => ChildHandle

export function spawnChild(spec: LaunchSpec): ChildHandle {
  const env: NodeJS.ProcessEnv = { ...(spec.role === 'worker' ? WORKER_MALLOC_ENV : {}), ...process.env, [CHILD_ENV]: JSON.stringify(spec) }
  for (const name of WITHHELD) delete env[name]
  return spawn(process.execPath, [...nodeArgs(spec.role), ENTRIES[spec.role]], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
}

/** The delay before starting a child again: growing when it keeps dying, so a crash loop does not spin. */
export function restartDelayMs(restarts: number, maxMs = 5000): number {
  return Math.min(maxMs, 100 * 2 ** Math.min(Math.max(restarts - 1, 0), 9))
}
