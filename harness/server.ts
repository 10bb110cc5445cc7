/**
 * Starts the real `npm start` entry (src/server/main.ts and its child processes) on a free port,
 * and ends it, with all its children, by their own process ids.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Shared by all test files: the embedded model is built once. */
export const TEST_CACHE_DIR = join(tmpdir(), 'spanserve-test-models')

export interface RunningServer {
  url: string
  port: number
  proc: ChildProcess
  /** Every JSON log line the server and its children printed. */
  logs: Record<string, unknown>[]
  /** Children's pids by role key (tokenizer, scheduler-0, worker-0-0), from the ready lines. */
  childPids(): Record<string, number>
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  stop(): Promise<number | null>
}

export interface StartOptions {
  args?: string[]
  env?: Record<string, string>
  timeoutMs?: number
  /** The log line that means "up" (default: the HTTP server's). A node agent prints another. */
  readyMessage?: string
  /** The checkout to run (default: this one; the bench compares against another with --base). */
  root?: string
  /** Node flags for the server process (its children inherit them). */
  nodeArgs?: string[]
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const root = opts.root ?? ROOT
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', join(root, 'src/server/main.ts'), '--port', '0', ...(opts.args ?? [])], {
    cwd: root,
    env: { ...process.env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, SPANSERVE_LOG_FORMAT: 'json', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Record<string, unknown>[] = []
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = []
  let stderr = ''
  let buf = ''
  proc.stdout!.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8')
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      let obj: Record<string, unknown>
      try {
        obj = JSON.parse(line) as Record<string, unknown>
      } catch {
        obj = { msg: line }
      }
      logs.push(obj)
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(obj)) {
          waiters[i]!.resolve(obj)
          waiters.splice(i, 1)
        }
      }
    }
  })
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 60_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const hit = logs.find(pred)
      if (hit) return resolve(hit)
      const timer = setTimeout(() => reject(new Error(`log line not seen in ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)), timeoutMs)
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) })
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`server exited (${code}) before the log line; stderr: ${stderr.slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`))
      })
    })

  const stop = async (): Promise<number | null> => {
    if (proc.exitCode !== null) return proc.exitCode
    const pids = Object.values(childPids())
    proc.kill('SIGTERM')
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          /* already gone */
        }
      }
    }, 15_000)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  const childPids = (): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const l of logs) if ((l.msg === 'process ready' || l.msg === 'worker started') && typeof l.child === 'string') out[l.child] = l.child_pid as number
    return out
  }

  try {
    const ready = await waitForLog((l) => l.msg === (opts.readyMessage ?? 'spanserve listening'), opts.timeoutMs ?? 120_000)
    const port = (ready.port as number | undefined) ?? 0
    return { url: `http://127.0.0.1:${port}`, port, proc, logs, childPids, waitForLog, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
