/**
 * Starts and supervises the child processes: tokenizer, one scheduler per DP rank, one worker per
 * (DP, TP) rank. A child that dies is reported and started again. A scheduler or worker takes only
 * its data-parallel group down: the tokenizer fails that group's requests and dispatches to the
 * other groups until it is back; a TP group restarts whole. The tokenizer takes every request in
 * flight with it. Either way the engine resumes those requests (engine-client/engine-client.ts). Workers on other nodes
 * are started by those nodes' agents (node-agent.ts), which report their deaths here.
 *
 * Crash loops: a child whose restart was futile (it died before ready, or soon after without work;
 * futile-restart.ts) --crash-loop-deaths times within --crash-loop-window opens its circuit.
 * Requests that need it then get 503 at once instead of waiting for a restart that keeps failing,
 * and its restarts back off up to RESTART_BACKOFF_OPEN_MS; the circuit closes once it is ready
 * again. A child that served is restarted at once, however often it is killed.
 *
 * Each death's cause (death-cause.ts) goes to the engine: deaths of the child's own fault count
 * against the requests lost with it (poison.ts).
 */
import type { Config } from '../../config/schema.ts'
import type { Endpoints } from '../../ipc/endpoints.ts'
import { Outbox } from '../../ipc/channel.ts'
import type { Message, ProcessExited, ProcessFatal, ProcessReady, ProcessStats } from '../../ipc/messages.ts'
import type { ModelInfo } from '../../model/load.ts'
import type { Logger } from '../../logging.ts'
import { SpanserveError, type ErrorCode } from '../../errors.ts'
import { childKey, planChildren, type ChildPlan } from './children.ts'
import { restartDelayMs, spawnChild, type ChildHandle, type SpawnChild } from './spawn-child.ts'
import type { ServingState } from '../engine-client/engine-client.ts'
import { deathCause, type DeathCause } from '../engine-client/death-cause.ts'
import { futileRestart, reportShowsWork } from './futile-restart.ts'

/** The longest pause between restarts of a child whose circuit is open (a crash loop). */
const RESTART_BACKOFF_OPEN_MS = 30_000

interface Child extends ChildPlan {
  /** Null while down, or always for a child on another node. */
  proc: ChildHandle | null
  pid: number | null
  ready: boolean
  restarts: number
  /** When its last periodic report arrived (the watchdog's heartbeat). */
  lastSeen: number
  /** Deaths in a row without a long healthy run between them: sets the restart back-off. */
  crashStreak: number
  readyAt: number
  /** Killed on purpose because another rank of its TP group died: restart it without more ado. */
  restartWithGroup: boolean
  /** A report since it was ready showed it at work: its restart was not futile. */
  worked: boolean
  /** A periodic report arrived since it was ready: it was up and turning, whatever then killed it from outside. */
  reported: boolean
  /** Killed by the hang watchdog: its SIGKILL is a hang, not an outside kill. */
  hungKill: boolean
  /** When it died futile deaths (futile-restart.ts), within the crash-loop window. */
  deaths: number[]
  /** A crash loop: requests that need it are not kept waiting for it. */
  circuitOpen: boolean
}

/** What the server learns from supervision. */
export interface SupervisionListener {
  /** A child died after start-up; the requests it held are to be resumed (or, by `cause`, failed as poison). */
  died(key: string, pid: number | null, cause: DeathCause): void
  /** What can be served changed: a child became ready, or a circuit opened. */
  changed(): void
  /** A local child exited, however (a death, a kill with its group, a stop): its unexported spans are to be recovered. */
  exited?(key: string, pid: number): void
}

export interface ChildInfo {
  key: string
  role: string
  node: number
  pid: number | null
  ready: boolean
  restarts: number
  /** In a crash loop (see the class comment). */
  circuitOpen: boolean
}

/** Where the launcher's messages to a child (or a node agent) go: an Outbox. */
export type MessageSink = Pick<Outbox, 'post' | 'discard' | 'close'>

/** How the launcher reaches the world: real processes and sockets unless a test scripts them. */
export interface LauncherIo {
  spawn: SpawnChild
  /** Opens the channel to a child's inbox or a node agent's. */
  connect(address: string): MessageSink
}

const REAL_IO: LauncherIo = { spawn: spawnChild, connect: (address) => new Outbox(address) }

/** The processes could not be started; `code` is the failing child's, or internal for a timeout or an early exit. */
export class LaunchError extends SpanserveError {
  constructor(message: string, code: ErrorCode = 'SPANSERVE_ERR_INTERNAL') {
    super(code, message)
    this.name = 'LaunchError'
  }
}

export class Launcher {
  private readonly children = new Map<string, Child>()
  private readonly outboxes = new Map<string, MessageSink>()
  private readonly groups: number
  private readonly tpSize: number
  private stopping = false
  private startup: { resolve: () => void; reject: (err: Error) => void } | null = null

  constructor(
    config: Config,
    private readonly endpoints: Endpoints,
    model: ModelInfo,
    contextLength: number,
    private readonly log: Logger,
    private readonly listener: SupervisionListener,
    /**
     * The server's own outbox to the tokenizer: group states and requests then reach it in the order
     * sent, so a request resubmitted once its group is back never finds the group still marked down.
     */
    toTokenizer?: MessageSink,
    private readonly io: LauncherIo = REAL_IO,
  ) {
    for (const plan of planChildren(config, endpoints, model, contextLength)) {
      this.children.set(plan.key, {
        ...plan,
        proc: null,
        pid: null,
        ready: false,
        restarts: 0,
        lastSeen: 0,
        crashStreak: 0,
        readyAt: 0,
        restartWithGroup: false,
        worked: false,
        reported: false,
        hungKill: false,
        deaths: [],
        circuitOpen: false,
      })
    }
    if (toTokenizer) this.outboxes.set('tokenizer', toTokenizer)
    this.crashLoopDeaths = config.crashLoopDeaths
    this.crashLoopWindowMs = config.crashLoopWindow * 1000
    this.groups = config.dpSize
    this.tpSize = config.tpSize
    this.hangTimeoutMs = config.hangTimeout * 1000
  }

  private readonly hangTimeoutMs: number
  private readonly crashLoopDeaths: number
  private readonly crashLoopWindowMs: number
  private watchdog: NodeJS.Timeout | null = null

  /** A child's periodic report: it is alive and its event loop turns, and whether it has work. */
  onHeartbeat(msg: Pick<ProcessStats, 'role' | 'dpRank' | 'tpRank' | 'pid' | 'liveRequests' | 'scheduler'>): void {
    const c = this.children.get(childKey(msg))
    if (!c || c.pid !== msg.pid) return
    c.lastSeen = Date.now()
    if (c.ready) c.reported = true
    if (!reportShowsWork(msg)) return
    if (c.ready) c.worked = true
    // A scheduler's steps since its last report ran on its workers too: their instant counts may miss short work.
    if (msg.role === 'scheduler' && (msg.scheduler?.batchSizes.length ?? 0) > 0) for (const w of this.members(c.group!)) if (w.ready) w.worked = true
  }

  /**
   * A process that is alive but stuck (a deadlock, a stopped process, an endless loop) never exits,
   * so its requests would wait for ever: one that stops reporting is killed, and restarted as a death.
   */
  private checkHangs(): void {
    const now = Date.now()
    for (const c of this.children.values()) {
      if (!c.ready || now - Math.max(c.lastSeen, c.readyAt) < this.hangTimeoutMs) continue
      this.log.error({ child: c.key, child_pid: c.pid, node: c.node, silent_s: Math.round((now - Math.max(c.lastSeen, c.readyAt)) / 1000) }, 'process hung; killing it')
      c.lastSeen = now
      if (c.node === 0) {
        c.hungKill = true
        c.proc?.kill('SIGKILL')
      } else {
        // The agent restarts it quietly: the death is handled here.
        this.agent(c.node).post({ type: 'restart_process', key: c.key })
        this.onExit(c, null, 'hung')
      }
    }
  }

  private members(group: number): Child[] {
    return [...this.children.values()].filter((c) => c.group === group)
  }

  private groupReady(group: number): boolean {
    return this.members(group).every((c) => c.ready)
  }

  allReady(): boolean {
    for (const c of this.children.values()) if (!c.ready) return false
    return true
  }

  /** Requests can be served: the tokenizer and at least one whole group are up. */
  canServe(): boolean {
    if (!this.children.get('tokenizer')!.ready) return false
    for (let d = 0; d < this.groups; d++) if (this.groupReady(d)) return true
    return false
  }

  /**
   * Whether requests can be dispatched now, must wait for a restart, or would wait in vain: the
   * tokenizer, or every group that is down, is in a crash loop.
   */
  serving(): ServingState {
    if (this.canServe()) return 'up'
    const tok = this.children.get('tokenizer')!
    if (!tok.ready) return tok.circuitOpen ? 'broken' : 'restarting'
    for (let d = 0; d < this.groups; d++) if (!this.members(d).some((c) => c.circuitOpen)) return 'restarting'
    return 'broken'
  }

  /** Why serving() is broken, for the 503's message. */
  brokenReason(): string {
    const looping = [...this.children.values()].filter((c) => c.circuitOpen).map((c) => c.key)
    return `crash loop: ${looping.join(', ')} died ${this.crashLoopDeaths} times within ${this.crashLoopWindowMs / 1000} s without serving`
  }

  list(): ChildInfo[] {
    return [...this.children.values()].map((c) => ({ key: c.key, role: c.spec.role, node: c.node, pid: c.pid, ready: c.ready, restarts: c.restarts, circuitOpen: c.circuitOpen }))
  }

  /** Start the local children and resolve once every child, remote ones too, is ready. */
  start(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const waiting = [...this.children.values()].filter((c) => !c.ready).map((c) => (c.node > 0 ? `${c.key} (node ${c.node})` : c.key))
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
      for (const c of this.children.values()) if (c.node === 0) this.spawn(c)
      if (this.hangTimeoutMs > 0) {
        this.watchdog = setInterval(() => this.checkHangs(), Math.min(5000, this.hangTimeoutMs / 2))
        this.watchdog.unref()
      }
    })
  }

  private spawn(c: Child): void {
    const proc = this.io.spawn(c.spec)
    c.proc = proc
    c.pid = proc.pid ?? null
    c.ready = false
    c.hungKill = false
    proc.on('exit', (code, signal) => {
      if (proc.pid !== undefined) this.listener.exited?.(c.key, proc.pid)
      if (c.proc !== proc) return
      c.proc = null
      this.onExit(c, code, signal)
    })
  }

  onReady(msg: ProcessReady): void {
    const c = this.children.get(childKey(msg))
    if (!c) return
    // A local child must be the process we started; a remote one is whoever its agent started.
    if (c.node === 0 ? c.proc?.pid !== msg.pid : false) return
    c.pid = msg.pid
    c.ready = true
    c.readyAt = Date.now()
    c.worked = false
    c.reported = false
    this.log.info({ child: c.key, child_pid: msg.pid, node: c.node, ...msg.detail }, 'process ready')
    if (this.startup) {
      if (this.allReady()) this.startup.resolve()
      return
    }
    if (c.circuitOpen) {
      c.circuitOpen = false
      this.log.warn({ child: c.key, child_pid: msg.pid }, 'crash loop over: circuit closed, requests wait for its restarts again')
    }
    if (c.group !== null && this.groupReady(c.group)) {
      this.log.info({ dp_rank: c.group }, 'data-parallel group back in dispatch')
      this.tellTokenizer(c.group, true, `${c.key} restarted`)
    } else if (c.group === null) {
      // A new tokenizer assumes every group is up: tell it which are not.
      for (let d = 0; d < this.groups; d++) if (!this.groupReady(d)) this.tellTokenizer(d, false, 'restarting')
    }
    // After the tokenizer was told: requests resubmitted now reach it behind the news.
    this.listener.changed()
  }

  onFatal(msg: ProcessFatal): void {
    const key = childKey(msg)
    this.log.error({ child: key, child_pid: msg.pid, code: msg.code, reason: msg.message }, 'process failed')
    // At start-up a failure is final: the whole launch stops with the child's reason.
    this.startup?.reject(new LaunchError(`${key}: ${msg.message}`, msg.code))
  }

  /** A node agent reports that one of its workers died (it starts it again itself). */
  onRemoteExit(msg: ProcessExited): void {
    const c = this.children.get(msg.key)
    if (!c || c.node === 0) return
    this.onExit(c, msg.code, msg.signal)
  }

  private onExit(c: Child, code: number | null, signal: string | null): void {
    c.ready = false
    if (this.stopping) return
    if (this.startup) {
      this.startup.reject(new LaunchError(`${c.key} exited during start-up (code ${code}, signal ${signal})`))
      return
    }
    if (c.restartWithGroup) {
      c.restartWithGroup = false
      this.outbox(c).discard()
      if (c.node === 0) this.respawn(c)
      return
    }
    const cause = deathCause(code, signal, c.hungKill)
    c.hungKill = false
    const futile = futileRestart(c, Date.now(), cause)
    // A remote child's agent restarts it (no respawn here): its next life starts not ready.
    if (c.node !== 0) c.readyAt = 0
    this.log.error({ child: c.key, child_pid: c.pid, node: c.node, code, signal, cause, futile }, 'process died; restarting it')
    this.outbox(c).discard()
    const opened = futile && this.countDeath(c)
    const reset = { type: 'reset', reason: `${c.key} died` } as const
    if (c.group === null) {
      this.listener.died(c.key, c.pid, cause)
      for (const other of this.children.values()) if (other !== c && other.ready) this.outbox(other).post(reset)
    } else {
      this.listener.died(c.key, c.pid, cause)
      // Only this group stops: the tokenizer hands its requests back to be resumed, the other groups keep serving.
      this.tellTokenizer(c.group, false, `${c.key} died`, c.key)
      // TP ranks run in lockstep and count their all-reduces from start: the group restarts whole.
      // Those are killed, not reset: a reset still on its way would reach their successors instead.
      const restarting = (w: Child) => this.tpSize > 1 && w.spec.role === 'worker'
      for (const other of this.members(c.group)) {
        if (other === c) continue
        if (restarting(other)) this.restartWithGroup(other)
        else if (other.ready) this.outbox(other).post(reset)
      }
    }
    if (opened) this.listener.changed()
    if (c.node === 0) this.respawn(c)
  }

  /** Records a futile death; true when it opened the child's circuit (K of them within the window). */
  private countDeath(c: Child): boolean {
    const now = Date.now()
    c.deaths = c.deaths.filter((t) => now - t < this.crashLoopWindowMs)
    c.deaths.push(now)
    if (c.circuitOpen || c.deaths.length < this.crashLoopDeaths) return false
    c.circuitOpen = true
    this.log.error(
      { child: c.key, deaths: c.deaths.length, window_s: this.crashLoopWindowMs / 1000, max_backoff_s: RESTART_BACKOFF_OPEN_MS / 1000 },
      `crash loop: ${c.key} died ${c.deaths.length} times within ${this.crashLoopWindowMs / 1000} s without serving; circuit open: requests that need it get 503 at once, and its restarts back off`,
    )
    return true
  }

  private restartWithGroup(w: Child): void {
    w.ready = false
    this.outbox(w).discard()
    if (w.node === 0) {
      if (!w.proc) return
      w.restartWithGroup = true
      w.proc.kill('SIGKILL')
    } else {
      this.agent(w.node).post({ type: 'restart_process', key: w.key })
    }
  }

  private respawn(c: Child): void {
    c.restarts++
    // A minute of health forgives earlier crashes: the back-off is for crash loops.
    c.crashStreak = c.readyAt > 0 && Date.now() - c.readyAt > 60_000 ? 1 : c.crashStreak + 1
    c.readyAt = 0
    // Requests wait for it: restart at once, unless it is in a crash loop; then back off.
    const delay = c.circuitOpen ? restartDelayMs(c.crashStreak, RESTART_BACKOFF_OPEN_MS) : restartDelayMs(1)
    if (c.circuitOpen) this.log.warn({ child: c.key, delay_ms: delay, crash_streak: c.crashStreak }, 'crash loop: restart backed off')
    setTimeout(() => {
      if (!this.stopping) this.spawn(c)
    }, delay)
  }

  private tellTokenizer(group: number, up: boolean, reason: string, process?: string): void {
    const tok = this.children.get('tokenizer')!
    if (tok.proc) this.outbox(tok).post({ type: 'group_state', dpRank: group, up, reason, process })
  }

  /** Send a message to every running child (e.g. a new trace setting). */
  /** Posts `msg` to every child; returns how many. */
  broadcast(msg: Message): number {
    let n = 0
    for (const c of this.children.values()) {
      if (!(c.proc || (c.node > 0 && c.ready))) continue
      this.outbox(c).post(msg)
      n++
    }
    return n
  }

  private outbox(c: Child): MessageSink {
    return this.outboxTo(c.key, c.inbox)
  }

  private agent(node: number): MessageSink {
    return this.outboxTo(`agent-${node}`, this.endpoints.agents[node]!)
  }

  private outboxTo(key: string, address: string): MessageSink {
    let o = this.outboxes.get(key)
    if (!o) {
      o = this.io.connect(address)
      this.outboxes.set(key, o)
    }
    return o
  }

  /** SIGTERM every local child, then SIGKILL what is left after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true
    if (this.watchdog) clearInterval(this.watchdog)
    const running = [...this.children.values()].map((c) => c.proc).filter((p): p is ChildHandle => p !== null && p.exitCode === null)
    await stopProcesses(running, graceMs)
    for (const o of this.outboxes.values()) o.close()
  }
}

/** SIGTERM, then SIGKILL for whatever has not exited after `graceMs`. */
export async function stopProcesses(running: readonly ChildHandle[], graceMs: number): Promise<void> {
  const exited = running.map((p) => new Promise<void>((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve()))))
  for (const p of running) p.kill('SIGTERM')
  const timer = setTimeout(() => {
    for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  }, graceMs)
  await Promise.all(exited)
  clearTimeout(timer)
}
