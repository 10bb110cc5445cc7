/**
 * What the server keeps of each request so that it survives the death of any child process: the
 * token ids already sent to the client, in order (the tokenizer rebuilds its detokenizer offsets and
 * held-back stop text from them), and which attempt is running. Each attempt has its own rid in the
 * pipeline, so late output of a dead attempt can never be taken for the new one's.
 *
 * With tracing on, it also keeps the last slice each process of the running attempt reported
 * exported (slice marks, src/tracing/slice-marks.ts), so that a resumed attempt's thread spans link
 * to the dead process's last slice: the attempt's carrier takes the link, and every process that
 * opens a thread span for it links there (spanserve.link.reason=resumed_from).
 */
import { randomInt } from 'node:crypto'
import type { GenerateReqInput, Role } from '../../ipc/messages.ts'
import type { CarrierLink } from '../../tracing/index.ts'

/** The spanserve.link.reason of a resumed attempt's link to the dead process's last slice. */
const RESUMED_FROM = 'resumed_from'

/** Why a request was resumed: the kind of process that died (`unavailable`: its group was down). */
export type ResumeReason = 'tokenizer_died' | 'scheduler_died' | 'worker_died' | 'unavailable'

export interface Resumption {
  reason: ResumeReason
  /** The dead process's key (tokenizer, scheduler-0, worker-0-1), when known. */
  process: string | null
  pid: number | null
  /** Tokens already sent, which the new attempt continues from. */
  tokens: number
}

export function resumeReason(processKey: string | null | undefined): ResumeReason {
  const role = processKey?.split('-')[0] as Role | undefined
  if (role === 'tokenizer' || role === 'scheduler' || role === 'worker') return `${role}_died`
  return 'unavailable'
}

export class ResumableRequest {
  /** Token ids whose text the client has been sent (or will be, in the output being handled). */
  readonly outputIds: number[] = []
  attempt = 0
  resumes = 0
  /** Deaths of a process's own fault this request was lost with (poison.ts). */
  ownDeaths = 0
  /** Set while the request is lost and not yet resubmitted. */
  pending: Resumption | null = null
  /** Tracing only: per process key, the running attempt's last slice that process exported (a traceparent). */
  private slices: Map<string, string> | null = null
  /** Tracing only: where the current attempt's thread spans link to (the dead process's last slice). */
  private resumedFrom: CarrierLink | null = null

  constructor(readonly req: GenerateReqInput) {
    // A sampled request without a seed gets one here, so that a resumed attempt draws what the
    // first would have: the worker's generator is then a function of (seed, position).
    if (req.sampling.temperature > 0 && req.sampling.seed === null) {
      req.sampling = { ...req.sampling, seed: randomInt(0, 2 ** 32 - 1) }
    }
  }

  get rid(): string {
    return this.req.rid
  }

  /** The rid of the running attempt in the child processes. */
  get pipelineRid(): string {
    return this.attempt === 0 ? this.req.rid : `${this.req.rid}.${this.attempt}`
  }

  /** The message that starts the current attempt. */
  message(): GenerateReqInput {
    if (this.attempt === 0) return this.req
    const link = this.resumedFrom
    const trace = link !== null && this.req.trace !== null ? { ...this.req.trace, links: [link] } : this.req.trace
    const next: GenerateReqInput = { ...this.req, rid: this.pipelineRid, trace, resumeIds: this.outputIds.length > 0 ? this.outputIds : undefined }
    // On a decode instance the room's KV went with the dead process: the resumed attempt prefills here.
    // A prefill instance's attempt sends its KV again (the decode instance takes the first that comes).
    if (next.bootstrap?.host === null) delete next.bootstrap
    return next
  }

  /** A process of the running attempt (its key) exported this slice of it: the latest wins. */
  noteSlice(processKey: string, traceparent: string): void {
    ;(this.slices ??= new Map()).set(processKey, traceparent)
  }

  /** The running attempt was lost: the next one continues from the tokens sent so far. */
  lose(reason: ResumeReason, processKey: string | null, pid: number | null): Resumption {
    // The dead process's last slice that the server heard of: the last it exported, which may be a
    // step or more before it died (what it had not exported yet died with it; slice-marks.ts).
    const last = processKey === null ? undefined : this.slices?.get(processKey)
    this.resumedFrom = last === undefined ? null : { traceparent: last, reason: RESUMED_FROM, process: processKey!, ...(pid === null ? {} : { pid }) }
    // The next attempt's processes report marks of their own, under its own rid.
    this.slices = null
    this.attempt++
    this.pending = { reason, process: processKey, pid, tokens: this.outputIds.length }
    return this.pending
  }
}
