/**
 * A Launcher whose children are scripted, not spawned: each "process" is an object the test makes
 * ready, report, die or ignore signals, and the messages the launcher sends are recorded instead of
 * going over ZeroMQ. With fake timers this drives the launcher's restart, back-off and circuit policy
 * at any pace (test/server/launcher-timers.test.ts).
 */
import { EventEmitter } from 'node:events'
import { pino } from 'pino'
import { parseConfig } from '../../src/config/parse.ts'
import { planEndpoints } from '../../src/ipc/endpoints.ts'
import type { Message } from '../../src/ipc/messages.ts'
import type { ModelInfo } from '../../src/model/load.ts'
import type { LaunchSpec } from '../../src/process/child.ts'
import { childKey } from '../../src/server/supervisor/children.ts'
import { Launcher, type MessageSink } from '../../src/server/supervisor/launcher.ts'
import type { ChildHandle } from '../../src/server/supervisor/spawn-child.ts'
import type { DeathCause } from '../../src/server/engine-client/death-cause.ts'

let nextPid = 1000

export class ScriptedChild extends EventEmitter implements ChildHandle {
  readonly pid = nextPid++
  readonly key: string
  /** When it was spawned (Date.now(), faked or not). */
  readonly bornAt = Date.now()
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  /** Signals sent to it, in order. */
  readonly signals: NodeJS.Signals[] = []
  /** Signals it survives (a child that ignores SIGTERM, say). */
  readonly ignores = new Set<NodeJS.Signals>()

  constructor(
    readonly spec: LaunchSpec,
    private readonly launcher: () => Launcher,
  ) {
    super()
    this.key = childKey(spec)
  }

  get alive(): boolean {
    return this.exitCode === null && this.signalCode === null
  }

  /** Its `ready` message. */
  ready(): void {
    this.launcher().onReady({ type: 'ready', role: this.spec.role, dpRank: this.spec.dpRank, tpRank: this.spec.tpRank, pid: this.pid, detail: {} })
  }

  /** Its periodic report; `liveRequests` > 0 shows it at work. */
  report(liveRequests = 0): void {
    this.launcher().onHeartbeat({ role: this.spec.role, dpRank: this.spec.dpRank, tpRank: this.spec.tpRank, pid: this.pid, liveRequests, scheduler: null })
  }

  /** It ends, as a process does: with an exit code, or killed by a signal. */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (!this.alive) throw new Error(`${this.key} (pid ${this.pid}) is already dead`)
    this.exitCode = code
    this.signalCode = signal
    this.emit('exit', code, signal)
  }

  kill(signal: NodeJS.Signals): boolean {
    this.signals.push(signal)
    // A real process's exit event comes later than the kill, never inside it.
    if (this.alive && !this.ignores.has(signal)) queueMicrotask(() => this.alive && this.exit(null, signal))
    return true
  }
}

export interface Sent {
  to: string
  msg: Message
}

/** `argv`: the server's flags (--dp-size, --crash-loop-deaths, ...). Environment variables are not read. */
export function scriptedLauncher(argv: readonly string[] = []) {
  const { config } = parseConfig(argv, {})
  const endpoints = planEndpoints('tcp://127.0.0.1:40000', { dpSize: config.dpSize, tpSize: config.tpSize, nodeHosts: [] })
  const names = new Map<string, string>([[endpoints.tokenizer, 'tokenizer']])
  endpoints.schedulers.forEach((a, d) => names.set(a, `scheduler-${d}`))
  endpoints.workers.forEach((ranks, d) => ranks.forEach((a, t) => names.set(a, `worker-${d}-${t}`)))
  /** Every child spawned, in order. */
  const spawned: ScriptedChild[] = []
  /** Every message the launcher sent, by the key of its receiver. */
  const sent: Sent[] = []
  /** Outbox discards (a dead child's pending messages dropped), by key. */
  const discarded: string[] = []
  const died: { key: string; pid: number | null; cause: DeathCause }[] = []
  let changes = 0
  const sink = (address: string): MessageSink => {
    const to = names.get(address) ?? address
    return {
      post: (msg) => (sent.push({ to, msg }), true),
      discard: () => void discarded.push(to),
      close: () => {},
    }
  }
  const launcher: Launcher = new Launcher(
    config,
    endpoints,
    {} as ModelInfo,
    1024,
    pino({ level: 'silent' }),
    { died: (key, pid, cause) => void died.push({ key, pid, cause }), changed: () => void changes++ },
    sink(endpoints.tokenizer),
    {
      spawn: (spec) => {
        const child = new ScriptedChild(spec, () => launcher)
        spawned.push(child)
        return child
      },
      connect: sink,
    },
  )
  /** The latest process started for a child key. */
  const latest = (key: string): ScriptedChild => {
    for (let i = spawned.length - 1; i >= 0; i--) if (spawned[i]!.key === key) return spawned[i]!
    throw new Error(`${key} was never spawned`)
  }
  /** Starts every child and makes each ready: the launcher is up, as after a normal start. */
  const startAll = async (): Promise<void> => {
    const started = launcher.start(60_000)
    for (const c of [...spawned]) c.ready()
    await started
  }
  const state = (key: string) => launcher.list().find((c) => c.key === key)!
  return { launcher, config, spawned, sent, discarded, died, changes: () => changes, latest, startAll, state }
}
