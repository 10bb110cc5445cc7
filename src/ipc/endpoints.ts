/**
 * Where each process's inbox lives. Every process binds one PULL socket (its inbox) and connects
 * PUSH sockets to the inboxes it sends to, so a restarted process binds the same address and its
 * peers reconnect by themselves. Over tcp the processes can spread over several nodes: the server,
 * tokenizer and schedulers on node 0, the workers shared out in (dp, tp) order (see workerNode).
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Endpoints {
  server: string
  tokenizer: string
  /** Indexed by dp rank. */
  schedulers: string[]
  /** Indexed by dp rank, then tp rank. */
  workers: string[][]
  /** All-reduce inboxes of the TP ranks (raw frames, not codec messages), by dp then tp rank. */
  collectives: string[][]
  /** The node agent of each node rank (index 0: unused, node 0 is the server itself). */
  agents: string[]
  /** The private directory of ipc sockets (removed at exit), or null for tcp. */
  runDir: string | null
}

export interface Layout {
  dpSize: number
  tpSize: number
  /** One reachable address per node; empty for a single node. */
  nodeHosts: readonly string[]
}

/** The node that runs worker (dp, tp): workers are dealt out in order, whole blocks per node. */
export function workerNode(layout: Layout, dp: number, tp: number): number {
  const nodes = Math.max(1, layout.nodeHosts.length)
  return Math.floor(((dp * layout.tpSize + tp) * nodes) / (layout.dpSize * layout.tpSize))
}

export function planEndpoints(transport: string, layout: Layout): Endpoints {
  const { dpSize, tpSize } = layout
  const nodes = Math.max(1, layout.nodeHosts.length)
  // name → node rank
  const names: [string, number][] = [
    ['server', 0],
    ['tokenizer', 0],
  ]
  for (let d = 0; d < dpSize; d++) names.push([`scheduler-${d}`, 0])
  for (let d = 0; d < dpSize; d++) for (let t = 0; t < tpSize; t++) names.push([`worker-${d}-${t}`, workerNode(layout, d, t)])
  if (tpSize > 1) for (let d = 0; d < dpSize; d++) for (let t = 0; t < tpSize; t++) names.push([`allreduce-${d}-${t}`, workerNode(layout, d, t)])
  for (let n = 1; n < nodes; n++) names.push([`agent-${n}`, n])
  let addr: (name: string, i: number, node: number) => string
  let runDir: string | null = null
  if (transport === 'ipc') {
    if (nodes > 1) throw new Error('--nnodes > 1 needs --ipc tcp://HOST:PORT: ipc sockets do not cross hosts')
    // mkdtemp creates the directory 0700: only this user can reach the sockets.
    runDir = mkdtempSync(join(tmpdir(), 'spanserve-'))
    const dir = runDir
    addr = (name) => `ipc://${join(dir, name + '.sock')}`
  } else {
    const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(transport)
    if (!m) throw new Error(`--ipc: expected "ipc" or tcp://HOST:PORT, got "${transport}"`)
    const base = Number(m[2])
    if (base < 1 || base + names.length - 1 > 65535) throw new Error(`--ipc: port range ${base}..${base + names.length - 1} is invalid`)
    // Every node derives the same table; a process's host is its node's address.
    const hosts = nodes > 1 ? layout.nodeHosts : [m[1]!]
    addr = (_name, i, node) => `tcp://${hosts[node]}:${base + i}`
  }
  const at = new Map(names.map(([n, node], i) => [n, addr(n, i, node)]))
  return {
    server: at.get('server')!,
    tokenizer: at.get('tokenizer')!,
    schedulers: Array.from({ length: dpSize }, (_, d) => at.get(`scheduler-${d}`)!),
    workers: Array.from({ length: dpSize }, (_, d) => Array.from({ length: tpSize }, (_, t) => at.get(`worker-${d}-${t}`)!)),
    collectives: Array.from({ length: dpSize }, (_, d) => Array.from({ length: tpSize }, (_, t) => at.get(`allreduce-${d}-${t}`) ?? '')),
    agents: Array.from({ length: nodes }, (_, n) => at.get(`agent-${n}`) ?? ''),
    runDir,
  }
}
