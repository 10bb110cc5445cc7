/**
 * The shared entry of every child process (tokenizer, scheduler, worker): reads the launch spec the
 * launcher put in SPANSERVE_CHILD, sets the process title, dies with its parent, reports a crash to
 * the launcher before exiting, and drains on SIGTERM.
 */
import type { Config } from '../config/schema.ts'
import type { Endpoints } from '../ipc/endpoints.ts'
import { Outbox, onSendQueueFull, type Handlers } from '../ipc/channel.ts'
import { useIpcSecret } from '../ipc/curve.ts'
import type { Role } from '../ipc/messages.ts'
import type { ModelInfo } from '../model/load.ts'
import { createLogger, type Logger } from '../logging.ts'
import { SpanserveError, type ErrorCode } from '../errors.ts'
import { dumpFlightRecorder, initTracing, isTracingEnabled, shutdownTracing } from '../tracing/setup.ts'
import { setLevel, setSampleRate } from '../tracing/trace.ts'
import { applyTraceVerdicts } from '../tracing/tail.ts'
import { reportSliceMarks } from '../tracing/slice-marks.ts'
import { startStatsReporter, type RoleStats } from './stats.ts'
import { tracingOptions } from '../config/tracing.ts'

export const CHILD_ENV = 'SPANSERVE_CHILD'

/**
 * How a child ends itself, so the launcher can tell whose fault a death was (server/engine-client/death-cause.ts):
 * a failure of its own (an uncaught exception, a failed start) exits FATAL; a peer that stopped
 * reading its messages exits PEER_STALLED, the peer's fault (the peer is killed as hung), not the
 * requests this process was running.
 */
export const CHILD_EXIT = { fatal: 1, peerStalled: 3 } as const

export interface LaunchSpec {
  role: Exclude<Role, 'server' | 'router'>
  dpRank: number
  tpRank: number
  config: Config
  endpoints: Endpoints
  model: ModelInfo
  /** Longest prompt + completion, resolved once by the launcher. */
  contextLength: number
}

export interface ChildContext extends LaunchSpec {
  log: Logger
  /** The launcher's inbox: ready/fatal reports and request errors go there. */
  toServer: Outbox
  /** Called on SIGTERM before exit; a child registers its own close work. */
  onShutdown(fn: () => Promise<void> | void): void
  /** Inbox handlers every child shares (run-time trace setting). */
  commonHandlers: Handlers
  /** Start the periodic /metrics report with this role's figures. */
  reportStats(collect: () => RoleStats): void
}

export function processLabel(role: Role, dpRank: number, tpRank: number, dpSize: number, tpSize: number): string {
  let label = `spanserve::${role}`
  if (role !== 'server' && role !== 'tokenizer' && dpSize > 1) label += ` DP${dpRank}`
  if (role === 'worker' && tpSize > 1) label += ` TP${tpRank}`
  return label
}

export async function runChild(role: LaunchSpec['role'], main: (ctx: ChildContext) => Promise<void>): Promise<void> {
  const raw = process.env[CHILD_ENV]
  if (!raw) {
    process.stderr.write(`${role}: started without ${CHILD_ENV}; this process is started by the launcher (npm start)\n`)
    process.exit(2)
  }
  const spec = JSON.parse(raw) as LaunchSpec
  const { config, dpRank, tpRank } = spec
  process.title = processLabel(role, dpRank, tpRank, config.dpSize, config.tpSize)
  const log = createLogger(config.logLevel, { role, dp_rank: dpRank, tp_rank: tpRank })
  useIpcSecret(config.ipcSecret)
  const toServer = new Outbox(spec.endpoints.server)
  const closers: (() => Promise<void> | void)[] = []

  const fatal = (code: ErrorCode, err: unknown, exitCode: number = CHILD_EXIT.fatal): void => {
    const message = err instanceof Error ? err.message : String(err)
    log.fatal({ err, code }, 'process failed')
    toServer.post({ type: 'fatal', role, dpRank, tpRank, pid: process.pid, code, message })
    // Give ZeroMQ a moment to hand the report over before the process goes.
    setTimeout(() => process.exit(exitCode), 200)
  }
  // A peer that stopped reading has cost this process requests or steps already: fail loudly, so that
  // supervision fails (or resumes) its requests and restarts it, instead of leaving them hanging.
  onSendQueueFull((e) =>
    fatal('SPANSERVE_ERR_INTERNAL', new Error(`IPC send queue to ${e.address} is full (${e.capacity} messages, the last a ${e.type}): the peer stopped reading`), CHILD_EXIT.peerStalled),
  )
  process.on('uncaughtException', (err) => fatal('SPANSERVE_ERR_INTERNAL', err))
  process.on('unhandledRejection', (err) => fatal('SPANSERVE_ERR_INTERNAL', err))

  // Die with the parent: a launcher killed with SIGKILL cannot end its children itself.
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0)
  }, 500).unref()

  let stopping = false
  process.on('SIGTERM', () => {
    if (stopping) return
    stopping = true
    void (async () => {
      for (const fn of closers) await fn()
      await shutdownTracing()
      toServer.close()
      process.exit(0)
    })()
  })
  process.on('SIGINT', () => {
    /* the launcher decides: it forwards SIGTERM */
  })

  try {
    // Ranks where they mean something: SGLang labels "Scheduler [DP n]" and "Worker [TP n] [DP n]".
    const identity = { role, dpRank: role === 'tokenizer' ? undefined : dpRank, tpRank: role === 'worker' ? tpRank : undefined }
    // The worker's main thread runs the model: its spans are built and exported by a thread of their own.
    await initTracing(tracingOptions(config), identity, { log, offload: role === 'worker' })
    // With tracing on: each request's last exported slice goes to the server, which links a resumed
    // attempt to it if this process dies (src/tracing/slice-marks.ts). Off: never called.
    if (isTracingEnabled()) reportSliceMarks((rids, slices) => toServer.post({ type: 'slice_marks', role, dpRank, tpRank, pid: process.pid, rids, slices }))
    const commonHandlers: Handlers = {
      trace_setting: (msg) => {
        setLevel(msg.level)
        setSampleRate(msg.sampleRate)
        log.info({ level: msg.level, sample_rate: msg.sampleRate }, 'trace setting changed')
      },
      // Tail sampling: the held spans of these traces are exported or let go (src/tracing/tail-buffer.ts).
      trace_verdict: (msg) => applyTraceVerdicts(msg.keep, msg.drop),
      // The flight recorder's window goes to the export queue; the server sums the answers (src/server/trace-dump.ts).
      trace_dump: (msg) => {
        void dumpFlightRecorder().then((sent) => toServer.post({ type: 'trace_dumped', role, dpRank, tpRank, pid: process.pid, id: msg.id, ...sent }))
      },
    }
    const reportStats = (collect: () => RoleStats) => {
      const stop = startStatsReporter(toServer, { role, dpRank, tpRank }, config.statsInterval * 1000, collect)
      closers.push(stop)
    }
    await main({ ...spec, log, toServer, onShutdown: (fn) => closers.push(fn), commonHandlers, reportStats })
  } catch (err) {
    fatal(err instanceof SpanserveError ? err.code : 'SPANSERVE_ERR_INTERNAL', err)
  }
}
