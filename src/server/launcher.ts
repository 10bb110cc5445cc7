/**
 * Starts and supervises the child processes: tokenizer, one scheduler per DP rank, one worker per
 * (DP, TP) rank. A child that dies is reported and started again. A scheduler or worker takes only
 * its data-parallel group down: the tokenizer fails that group's requests and dispatches to the
 * other groups until it is back. The tokenizer takes every request in flight with it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Config } from '../config/schema.ts'
import type { Endpoints } from '../ipc/endpoints.ts'
import { Outbox } from '../ipc/channel.ts'
import type { Message, ProcessFatal, ProcessReady } from '../ipc/messages.ts'
import type { ModelInfo } from '../model/load.ts'
import { CHILD_ENV, type LaunchSpec } from '../process/child.ts'
import type { Logger } from '../logging.ts'

const ENTRIES = {
  tokenizer: fileURLToPath(new URL('../tokenizer/main.ts', import.meta.url)),
  scheduler: fileURLToPath(new URL('../scheduler/main.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../worker/main.ts', import.meta.url)),
}

interface Child {
  key: string
  /** Data-parallel group, or null for the tokenizer. */
  group: number | null
  spec: LaunchSpec
  inbox: string
  proc: ChildProcess | null
  ready: boolean
  restarts: number
  /** Killed on purpose because another rank of its TP group died: restart it without more ado. */
  restartWithGroup: boolean
}

export interface ChildInfo {
  key: string
  role: string
  pid: number | null
  ready: boolean
  restarts: number
}

export class LaunchError extends Error {
  readonly code: string
  constructor(message: string, code = 'SPANSERVE_ERR_INTERNAL') {
    super(message)
    this.code = code
  }
}

export class Launcher {
  private readonly children = new Map<string, Child>()
  private readonly outboxes = new Map<string, Outbox>()
  private stopping = false
  private startup: { resolve: () => void; reject: (err: Error) => void } | null = null

  constructor(
    config: Config,
    endpoints: Endpoints,
    model: ModelInfo,
    contextLength: number,
    private readonly log: Logger,
    /** Called when the tokenizer dies: every request in flight is lost. */
    private readonly onTokenizerDeath: () => void,
  ) {
    // Children never need the API key: keep it out of their environment.
    const base = { config: { ...config, apiKey: '' }, endpoints, model, contextLength }
    const add = (key: string, group: number | null, spec: LaunchSpec, inbox: string) =>
      this.children.set(key, { key, group, spec, inbox, proc: null, ready: false, restarts: 0, restartWithGroup: false })
    add('tokenizer', null, { ...base, role: 'tokenizer', dpRank: 0, tpRank: 0 }, endpoints.tokenizer)
    for (let d = 0; d < config.dpSize; d++) {
      add(`scheduler-${d}`, d, { ...base, role: 'scheduler', dpRank: d, tpRank: 0 }, endpoints.schedulers[d]!)
      for (let t = 0; t < config.tpSize; t++) add(`worker-${d}-${t}`, d, { ...base, role: 'worker', dpRank: d, tpRank: t }, endpoints.workers[d]![t]!)
    }
    this.groups = config.dpSize
    this.tpSize = config.tpSize
  }

  private readonly groups: number
  private readonly tpSize: number

  private members(group: number): Child[] {
    return [...this.children.values()].filter((c) => c.group === group)
  }

  private groupReady(group: number): boolean {
    return this.members(group).every((c) => c.ready)
  }

  /** Requests can be served: the tokenizer and at least one whole group are up. */
  canServe(): boolean {
    if (!this.children.get('tokenizer')!.ready) return false
    for (let d = 0; d < this.groups; d++) if (this.groupReady(d)) return true
    return false
  }

  private tellTokenizer(group: number, up: boolean, reason: string): void {
    const tok = this.children.get('tokenizer')!
    if (tok.proc) this.outbox(tok).post({ type: 'group_state', dpRank: group, up, reason })
  }

  private keyOf(msg: { role: string; dpRank: number; tpRank: number }): string {
    if (msg.role === 'tokenizer') return 'tokenizer'
    if (msg.role === 'scheduler') return `scheduler-${msg.dpRank}`
    return `worker-${msg.dpRank}-${msg.tpRank}`
  }

  allReady(): boolean {
    for (const c of this.children.values()) if (!c.ready) return false
    return true
  }

  list(): ChildInfo[] {
    return [...this.children.values()].map((c) => ({ key: c.key, role: c.spec.role, pid: c.proc?.pid ?? null, ready: c.ready, restarts: c.restarts }))
  }

  /** Start every child and resolve once all are ready; rejects with the first failure's reason. */
  start(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const waiting = [...this.children.values()].filter((c) => !c.ready).map((c) => c.key)
        fail(new LaunchError(`processes not ready after ${timeoutMs / 1000} s: ${waiting.join(', ')}`))
      }, timeoutMs)
      const fail = (err: Error) => {
        clearTimeout(timer)
        this.startup = null
        reject(err)
      }
      this.startup = {
        resolve: () => {
          clearTimeout(timer)
          this.startup = null
          resolve()
        },
        reject: fail,
      }
      for (const c of this.children.values()) this.spawn(c)
    })
  }

  private spawn(c: Child): void {
    const proc = spawn(process.execPath, [...process.execArgv, ENTRIES[c.spec.role]], {
      env: { ...process.env, [CHILD_ENV]: JSON.stringify(c.spec) },
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    c.proc = proc
    c.ready = false
    proc.on('exit', (code, signal) => this.onExit(c, proc, code, signal))
  }

  onReady(msg: ProcessReady): void {
    const c = this.children.get(this.keyOf(msg))
    if (!c || c.proc?.pid !== msg.pid) return
    c.ready = true
    this.log.info({ child: c.key, child_pid: msg.pid, ...msg.detail }, 'process ready')
    if (this.startup) {
      if (this.allReady()) this.startup.resolve()
      return
    }
    if (c.group !== null && this.groupReady(c.group)) {
      this.log.info({ dp_rank: c.group }, 'data-parallel group back in dispatch')
      this.tellTokenizer(c.group, true, `${c.key} restarted`)
    } else if (c.group === null) {
      // A new tokenizer assumes every group is up: tell it which are not.
      for (let d = 0; d < this.groups; d++) if (!this.groupReady(d)) this.tellTokenizer(d, false, 'restarting')
    }
  }

  onFatal(msg: ProcessFatal): void {
    const key = this.keyOf(msg)
    this.log.error({ child: key, child_pid: msg.pid, code: msg.code, reason: msg.message }, 'process failed')
    // At start-up a failure is final: the whole launch stops with the child's reason.
    this.startup?.reject(new LaunchError(`${key}: ${msg.message}`, msg.code))
  }

  private onExit(c: Child, proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (c.proc !== proc) return
    c.proc = null
    c.ready = false
    if (this.stopping) return
    if (this.startup) {
      this.startup.reject(new LaunchError(`${c.key} exited during start-up (code ${code}, signal ${signal})`))
      return
    }
    if (c.restartWithGroup) {
      c.restartWithGroup = false
      this.respawn(c)
      return
    }
    this.log.error({ child: c.key, child_pid: proc.pid, code, signal }, 'process died; restarting it')
    this.outbox(c).discard()
    const reset = { type: 'reset', reason: `${c.key} died` } as const
    if (c.group === null) {
      this.onTokenizerDeath()
      for (const other of this.children.values()) if (other !== c && other.proc) this.outbox(other).post(reset)
    } else {
      // Only this group stops: its requests fail, the other groups keep serving.
      this.tellTokenizer(c.group, false, `${c.key} died`)
      for (const other of this.members(c.group)) if (other !== c && other.proc) this.outbox(other).post(reset)
      // TP ranks run in lockstep and count their all-reduces from start: the group restarts whole.
      if (this.tpSize > 1) {
        for (const w of this.members(c.group)) {
          if (w === c || w.spec.role !== 'worker' || !w.proc) continue
          w.restartWithGroup = true
          w.proc.kill('SIGKILL')
        }
      }
    }
    this.respawn(c)
  }

  private respawn(c: Child): void {
    c.restarts++
    this.outbox(c).discard()
    // Back off a little when a child keeps dying, so a crash loop does not spin.
    setTimeout(() => {
      if (!this.stopping) this.spawn(c)
    }, Math.min(5000, 100 * 2 ** Math.min(c.restarts - 1, 6)))
  }

  /** Send a message to every running child (e.g. a new trace setting). */
  broadcast(msg: Message): void {
    for (const c of this.children.values()) if (c.proc) this.outbox(c).post(msg)
  }

  private outbox(c: Child): Outbox {
    let o = this.outboxes.get(c.key)
    if (!o) {
      o = new Outbox(c.inbox)
      this.outboxes.set(c.key, o)
    }
    return o
  }

  /** SIGTERM every child, then SIGKILL what is left after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true
    const running = [...this.children.values()].map((c) => c.proc).filter((p): p is ChildProcess => p !== null && p.exitCode === null)
    const exited = running.map((p) => new Promise<void>((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve()))))
    for (const p of running) p.kill('SIGTERM')
    const timer = setTimeout(() => {
      for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    }, graceMs)
    await Promise.all(exited)
    clearTimeout(timer)
    for (const o of this.outboxes.values()) o.close()
  }
}
