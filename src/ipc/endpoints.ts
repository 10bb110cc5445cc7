/**
 * Where each process's inbox lives. Every process binds one PULL socket (its inbox) and connects
 * PUSH sockets to the inboxes it sends to, so a restarted process binds the same address and its
 * peers reconnect by themselves.
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
  /** The private directory of ipc sockets (removed at exit), or null for tcp. */
  runDir: string | null
}

export function planEndpoints(transport: string, dpSize: number, tpSize: number): Endpoints {
  const names = ['server', 'tokenizer']
  for (let d = 0; d < dpSize; d++) names.push(`scheduler-${d}`)
  for (let d = 0; d < dpSize; d++) for (let t = 0; t < tpSize; t++) names.push(`worker-${d}-${t}`)
  if (tpSize > 1) for (let d = 0; d < dpSize; d++) for (let t = 0; t < tpSize; t++) names.push(`allreduce-${d}-${t}`)
  let addr: (name: string, i: number) => string
  let runDir: string | null = null
  if (transport === 'ipc') {
    // mkdtemp creates the directory 0700: only this user can reach the sockets.
    runDir = mkdtempSync(join(tmpdir(), 'spanserve-'))
    const dir = runDir
    addr = (name) => `ipc://${join(dir, name + '.sock')}`
  } else {
    const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(transport)
    if (!m) throw new Error(`--ipc: expected "ipc" or tcp://HOST:PORT, got "${transport}"`)
    const host = m[1]!
    const base = Number(m[2])
    if (base < 1 || base + names.length - 1 > 65535) throw new Error(`--ipc: port range ${base}..${base + names.length - 1} is invalid`)
    addr = (_name, i) => `tcp://${host}:${base + i}`
  }
  const at = new Map(names.map((n, i) => [n, addr(n, i)]))
  return {
    server: at.get('server')!,
    tokenizer: at.get('tokenizer')!,
    schedulers: Array.from({ length: dpSize }, (_, d) => at.get(`scheduler-${d}`)!),
    workers: Array.from({ length: dpSize }, (_, d) => Array.from({ length: tpSize }, (_, t) => at.get(`worker-${d}-${t}`)!)),
    collectives: Array.from({ length: dpSize }, (_, d) => Array.from({ length: tpSize }, (_, t) => at.get(`allreduce-${d}-${t}`) ?? '')),
    runDir,
  }
}
