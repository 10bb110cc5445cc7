/**
 * A child process that speaks one JSON object per stdout line (the OTLP sink, the transformers.js
 * server): spawn it, wait for a line matching a predicate, send it lines, end it by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process'

const live = new Set<ChildProcess>()

/** Remember a child so that an interrupted bench can end it (by its pid). */
export function track(proc: ChildProcess): void {
  live.add(proc)
  proc.on('exit', () => live.delete(proc))
}

/** SIGKILL every tracked child still running: the bench is being interrupted. */
export function killTracked(): void {
  for (const proc of live) {
    try {
      process.kill(proc.pid!, 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
}

export class JsonLineChild {
  private readonly waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = []
  private buf = ''
  private stderr = ''
  readonly exited: Promise<number | null>

  private constructor(
    readonly proc: ChildProcess,
    readonly name: string,
  ) {
    proc.stdout!.setEncoding('utf8')
    proc.stdout!.on('data', (chunk: string) => {
      this.buf += chunk
      let nl: number
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl)
        this.buf = this.buf.slice(nl + 1)
        let obj: Record<string, unknown>
        try {
          obj = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue
        }
        for (let i = this.waiters.length - 1; i >= 0; i--) {
          if (this.waiters[i]!.pred(obj)) this.waiters.splice(i, 1)[0]!.resolve(obj)
        }
      }
    })
    proc.stderr!.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString('utf8')).slice(-4000)))
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)))
    track(proc)
  }

  static start(name: string, args: string[], env: Record<string, string> = {}): JsonLineChild {
    const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    return new JsonLineChild(proc, name)
  }

  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching line in ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs)
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) })
      void this.exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${code}); stderr: ${this.stderr}`))
      })
    })
  }

  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`)
  }

  /** SIGTERM by pid, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    process.kill(this.proc.pid!, 'SIGTERM')
    const timer = setTimeout(() => {
      try {
        process.kill(this.proc.pid!, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }, graceMs)
    await this.exited
    clearTimeout(timer)
  }
}
