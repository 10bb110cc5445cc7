/**
 * `spanserve router` as users start it (`npx spanserve router`), logging JSON lines, for tests and
 * scripts: resolves once it listens, with its URL, its log lines and its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, TEST_CACHE_DIR } from './server.ts'

export interface RunningRouter {
  url: string
  port: number
  proc: ChildProcess
  /** Every JSON log line it printed. */
  logs: Record<string, unknown>[]
  /** Its exit code once it has exited. */
  exited: Promise<number | null>
}

/** `args` after `router --port 0`; the caller ends it (proc.kill) or lets the test's teardown. */
export async function startRouter(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<RunningRouter> {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/spanserve.js'), 'router', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, SPANSERVE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  let stderr = ''
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  const logs: Record<string, unknown>[] = []
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`router did not start: ${stderr}`)), timeoutMs)
    proc.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8')
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>
        buf = buf.slice(nl + 1)
        logs.push(line)
        if (line.msg === 'spanserve router listening') {
          clearTimeout(timer)
          resolve(line.port as number)
        }
      }
    })
    void exited.then((code) => reject(new Error(`router exited (${code}): ${stderr}`)))
  })
  return { url: `http://127.0.0.1:${port}`, port, proc, logs, exited }
}
