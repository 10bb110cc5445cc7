/**
 * A node other than node 0 (`--node-rank R`): starts only this node's worker ranks, which connect to
 * the server, scheduler and peers on the other nodes over tcp, and keeps them running. A worker that
 * dies is reported to node 0 (which fails its group's requests and restarts the rest of its TP
 * group) and started again here; node 0 can ask for a worker to be restarted.
 */
import type { Config } from '../../config/schema.ts'
import type { Endpoints } from '../../ipc/endpoints.ts'
import { Inbox, Outbox } from '../../ipc/channel.ts'
import type { ModelInfo } from '../../model/load.ts'
import type { Logger } from '../../logging.ts'
import { planChildren, type ChildPlan } from './children.ts'
import { restartDelayMs, spawnChild, type ChildHandle } from './spawn-child.ts'
import { stopProcesses } from './launcher.ts'

interface Local {
  plan: ChildPlan
  proc: ChildHandle | null
  restarts: number
  /** Node 0 asked for this restart: it already knows. */
  quiet: boolean
}

export async function runNodeAgent(config: Config, endpoints: Endpoints, model: ModelInfo, contextLength: number, log: Logger): Promise<() => Promise<void>> {
  const mine = planChildren(config, endpoints, model, contextLength).filter((p) => p.node === config.nodeRank)
  if (mine.length === 0) throw new Error(`node ${config.nodeRank} has no worker to run: ${config.dpSize * config.tpSize} workers over ${config.nnodes} nodes`)
  const toServer = new Outbox(endpoints.server)
  const locals = new Map<string, Local>(mine.map((plan) => [plan.key, { plan, proc: null, restarts: 0, quiet: false }]))
  let stopping = false

  const spawn = (l: Local) => {
    const proc = spawnChild(l.plan.spec)
    l.proc = proc
    log.info({ child: l.plan.key, child_pid: proc.pid }, 'worker started')
    proc.on('exit', (code, signal) => {
      if (l.proc !== proc || stopping) return
      l.proc = null
      if (!l.quiet) {
        log.error({ child: l.plan.key, code, signal }, 'worker died; restarting it')
        toServer.post({ type: 'process_exited', key: l.plan.key, code, signal })
      }
      l.quiet = false
      l.restarts++
      setTimeout(() => {
        if (!stopping) spawn(l)
      }, restartDelayMs(l.restarts))
    })
  }

  const inbox = new Inbox(
    endpoints.agents[config.nodeRank]!,
    {
      restart_process: (msg) => {
        const l = locals.get(msg.key)
        if (!l?.proc) return
        l.quiet = true
        l.proc.kill('SIGKILL')
      },
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  for (const l of locals.values()) spawn(l)
  log.info({ node_rank: config.nodeRank, workers: mine.map((p) => p.key), server: endpoints.server }, 'node agent running; workers report to node 0')
  return async () => {
    stopping = true
    await stopProcesses(
      [...locals.values()].map((l) => l.proc).filter((p): p is ChildHandle => p !== null),
      config.shutdownTimeout * 1000,
    )
    inbox.close()
    toServer.close()
  }
}
