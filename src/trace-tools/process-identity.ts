/**
 * Which OS process a span came from, read off its resource (every spanserve process sets
 * host.name, process.pid, spanserve.process.role and its ranks), and how to name it.
 */
import { HOST_NAME, PROCESS_PID, SERVICE_NAME, SPANSERVE_DISAGGREGATION_MODE, SPANSERVE_DP_RANK, SPANSERVE_PROCESS_ROLE, SPANSERVE_TP_RANK } from '../tracing/attributes.ts'
import type { AttributeMap } from './span-record.ts'

export interface ProcessIdentity {
  /** Groups spans of one process: host, pid, service and role together. */
  key: string
  /** "Server", "Tokenizer", "Scheduler [DP 0]", "Worker [TP 0] [DP 0]", or the service name. */
  label: string
  host: string | undefined
  osPid: number | undefined
  /** Orders processes as a request flows: callers, server, tokenizer, schedulers, workers. */
  order: readonly number[]
}

const ROLE_ORDER: Record<string, number> = { server: 1, tokenizer: 2, scheduler: 3, worker: 4 }

export function processIdentityOf(resource: AttributeMap): ProcessIdentity {
  const service = stringOf(resource[SERVICE_NAME])
  const host = stringOf(resource[HOST_NAME])
  const osPid = numberOf(resource[PROCESS_PID])
  const role = stringOf(resource[SPANSERVE_PROCESS_ROLE])
  const tp = numberOf(resource[SPANSERVE_TP_RANK])
  const dp = numberOf(resource[SPANSERVE_DP_RANK])
  const side = stringOf(resource[SPANSERVE_DISAGGREGATION_MODE])
  let label = role === undefined ? (service ?? 'unknown service') : capitalize(role)
  // A prefill/decode pair's two servers, tokenizers, … told apart.
  if (side !== undefined) label += ` (${side})`
  if (tp !== undefined) label += ` [TP ${tp}]`
  if (dp !== undefined) label += ` [DP ${dp}]`
  return {
    key: [service, host, osPid, role, tp, dp].map((v) => v ?? '').join('|'),
    label,
    host,
    osPid,
    // A process with no spanserve role is a caller or a peer service: drawn first.
    order: [role === undefined ? 0 : (ROLE_ORDER[role] ?? 5), dp ?? -1, tp ?? -1],
  }
}

export function compareProcesses(a: ProcessIdentity, b: ProcessIdentity): number {
  for (let i = 0; i < Math.max(a.order.length, b.order.length); i++) {
    const d = (a.order[i] ?? 0) - (b.order[i] ?? 0)
    if (d !== 0) return d
  }
  if (a.label !== b.label) return a.label < b.label ? -1 : 1
  if (a.host !== b.host) return (a.host ?? '') < (b.host ?? '') ? -1 : 1
  if (a.osPid !== b.osPid) return (a.osPid ?? -1) - (b.osPid ?? -1)
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0
}

function capitalize(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1)
}

function stringOf(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'string' && v !== '' && Number.isFinite(Number(v))) return Number(v)
  return undefined
}
