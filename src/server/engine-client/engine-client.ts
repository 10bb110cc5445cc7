/**
 * The server's side of the pipeline: hands requests to the tokenizer process and routes what comes
 * back (text deltas, typed errors) to the HTTP request that waits for it.
 *
 * A crash costs latency, not answers. A request that arrives while the processes it needs restart
 * waits for them (up to --restart-wait), and a request lost with a dead process is resubmitted,
 * continuing from its prompt plus the tokens already sent (resume.ts): on another data-parallel
 * group at once when one is serving, else once its own is back. Only a crash loop (an open circuit,
 * launcher.ts) or the bound answers 503, and a request lost with two deaths of a process's own fault
 * is failed as poison instead (poison.ts).
 */
import type { Outbox } from '../../ipc/channel.ts'
import type { BatchStrOutput, GenerateReqInput, ReqError, SliceMarks, StrOutput, TokenizeOutput, TokenizeReq } from '../../ipc/messages.ts'
import { SpanserveError, isErrorCode } from '../../errors.ts'
import { childKey } from '../supervisor/children.ts'
import { ResumableRequest, resumeReason, type Resumption } from './resume.ts'
import type { DeathCause } from './death-cause.ts'
import { countDeath, poisonError } from './poison.ts'
import { TokenizeCalls } from './tokenize-calls.ts'

export interface RequestSink {
  onOutput(item: StrOutput): void
  onError(err: SpanserveError): void
  /** The request was lost with a process and goes on in a new attempt. */
  onResumed?(r: Resumption): void
}

/** Whether requests can be dispatched now, must wait for a restart, or would wait in vain (crash loop). */
export type ServingState = 'up' | 'restarting' | 'broken'

/** How a wait for a restart ended. */
export type WaitOutcome = 'served' | 'timed_out' | 'crash_loop' | 'aborted'

export interface EngineObserver {
  /** A lost request was resubmitted after `waitedMs`. */
  resumed(rid: string, r: Resumption, waitedMs: number): void
  /** A request waited for a restart (arriving, or resumed) for `seconds`. */
  waited(seconds: number, outcome: WaitOutcome): void
  /** A request lost with its second death of a process's own fault is failed, not resumed (poison.ts). */
  poisoned?(req: GenerateReqInput, processKey: string | null, cause: DeathCause | undefined): void
}

export interface EngineOptions {
  serving: () => ServingState
  /** Milliseconds a request may wait for a restart before its 503. */
  restartWaitMs: number
  /** Why serving is broken, for the 503's message. */
  brokenReason?: () => string
}

/** Pause before resubmitting a request that a process refused as unavailable while the launcher saw all up. */
const UNAVAILABLE_RETRY_MS = 20

interface Flight {
  r: ResumableRequest
  sink: RequestSink
  /** Set while the request waits for a restart. */
  waiting: { since: number; timer: NodeJS.Timeout } | null
}

/**
 * What the HTTP layer needs from the engine: submit a generation, abort it, tokenize. The routes take
 * this interface, so they can be tested through `inject()` against a scripted engine (as vLLM's
 * serving classes take an `EngineClient`).
 */
export interface EngineClient {
  /** Dispatches, or waits for a restart; throws a SpanserveError (SPANSERVE_ERR_UNAVAILABLE) when it cannot. */
  submit(req: GenerateReqInput, sink: RequestSink): void
  /** The client went away or its deadline passed. */
  abort(rid: string, reason: string): void
  /** /tokenize and /detokenize, answered by the tokenizer without generating. */
  tokenize(req: TokenizeReq): Promise<TokenizeOutput>
}

/** The engine client over the process pipeline: the tokenizer process's mailbox, with resume on deaths. */
export class PipelineEngineClient implements EngineClient {
  private readonly flights = new Map<string, Flight>()
  /** The running attempts, by their rid in the pipeline. */
  private readonly running = new Map<string, Flight>()
  /** Waiting for a restart, in arrival order. */
  private readonly waiting = new Set<Flight>()
  /** The pid each child key had when it last died (for the resume's trace event), and how it died. */
  private readonly lastDeath = new Map<string, { pid: number | null; cause: DeathCause }>()
  observer: EngineObserver | null = null
  /** /tokenize and /detokenize, answered by the tokenizer without generating. */
  readonly tokenizeCalls: TokenizeCalls

  constructor(
    private readonly toTokenizer: Outbox,
    private readonly opts: EngineOptions,
  ) {
    this.tokenizeCalls = new TokenizeCalls(toTokenizer, () => opts.serving() === 'up')
  }

  get size(): number {
    return this.flights.size
  }

  /** Requests waiting for a restart. */
  get waitingCount(): number {
    return this.waiting.size
  }

  /** Dispatches, or waits for a restart; throws SPANSERVE_ERR_UNAVAILABLE at once in a crash loop. */
  submit(req: GenerateReqInput, sink: RequestSink): void {
    const state = this.opts.serving()
    if (state === 'broken') throw this.brokenError()
    if (state === 'restarting' && this.opts.restartWaitMs <= 0) throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'the server is not ready: a process is starting or restarting')
    const f: Flight = { r: new ResumableRequest(req), sink, waiting: null }
    this.flights.set(req.rid, f)
    if (state === 'up') this.send(f)
    else this.park(f)
  }

  tokenize(req: TokenizeReq): Promise<TokenizeOutput> {
    return this.tokenizeCalls.call(req)
  }

  /** The client went away or its deadline passed: stop the request everywhere and free its KV. */
  abort(rid: string, reason: string): void {
    const f = this.flights.get(rid)
    if (!f) return
    this.flights.delete(rid)
    if (f.waiting) {
      this.unpark(f, 'aborted')
      return
    }
    this.running.delete(f.r.pipelineRid)
    this.toTokenizer.post({ type: 'abort', rid: f.r.pipelineRid, reason })
  }

  onBatch(batch: BatchStrOutput): void {
    for (const item of batch.items) {
      const f = this.running.get(item.rid)
      if (!f) continue
      f.r.outputIds.push(item.tokenId)
      if (item.finishReason !== null) this.forget(f)
      f.sink.onOutput(item)
    }
  }

  /** Tracing on: a child's last exported slice of each request, kept for a resume's links (resume.ts). */
  onSliceMarks(msg: SliceMarks): void {
    const key = childKey(msg)
    for (let i = 0; i < msg.rids.length; i++) {
      const slice = msg.slices[i]
      if (slice !== undefined) this.running.get(msg.rids[i]!)?.r.noteSlice(key, slice)
    }
  }

  onError(msg: ReqError): void {
    if (this.tokenizeCalls.onError(msg)) return
    const f = this.running.get(msg.rid)
    if (!f) return
    // Unavailable: the request was lost with a process, or its group was down when it got there.
    if (msg.code === 'SPANSERVE_ERR_UNAVAILABLE') {
      this.lose(f, msg.lost ?? null)
      return
    }
    this.forget(f)
    const code = isErrorCode(msg.code) ? msg.code : 'SPANSERVE_ERR_INTERNAL'
    f.sink.onError(new SpanserveError(code, msg.message, msg.param))
  }

  /** A child process died (`key`: tokenizer, scheduler-0, worker-0-1). The tokenizer takes every attempt with it. */
  processDied(key: string, pid: number | null, cause: DeathCause = 'external'): void {
    this.lastDeath.set(key, { pid, cause })
    if (key !== 'tokenizer') return
    this.tokenizeCalls.failAll(new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'the tokenizer process died; the call can be retried')) // its group's requests come back from the tokenizer as lost
    for (const f of [...this.running.values()]) this.lose(f, key)
  }

  /** What the processes can do changed (one became ready, a circuit opened): dispatch or fail who waits. */
  servingChanged(): void {
    if (this.waiting.size === 0) return
    const state = this.opts.serving()
    if (state === 'restarting') return
    for (const f of [...this.waiting]) {
      if (state === 'up') {
        this.unpark(f, 'served')
        this.send(f)
      } else {
        this.forget(f, 'crash_loop')
        f.sink.onError(this.brokenError())
      }
    }
  }

  /** The server stops: every request, running or waiting, fails with `err`. */
  failAll(err: SpanserveError): void {
    this.tokenizeCalls.failAll(err)
    const all = [...this.flights.values()]
    for (const f of all) this.forget(f, 'aborted')
    for (const f of all) f.sink.onError(err)
  }

  private send(f: Flight): void {
    const r = f.r
    if (r.pending) {
      this.observer?.resumed(r.rid, r.pending, 0)
      r.resumes++
      r.pending = null
    }
    this.running.set(r.pipelineRid, f)
    this.toTokenizer.post(r.message())
  }

  private lose(f: Flight, processKey: string | null): void {
    this.running.delete(f.r.pipelineRid)
    // The lost report follows the death's (launcher: died, then the tokenizer is told), so its cause is known.
    const death = processKey === null ? undefined : this.lastDeath.get(processKey)
    if (processKey !== null && countDeath(f.r, death?.cause)) {
      this.forget(f)
      this.observer?.poisoned?.(f.r.req, processKey, death?.cause)
      f.sink.onError(poisonError(processKey, death?.cause))
      return
    }
    const resumption = f.r.lose(resumeReason(processKey), processKey, death?.pid ?? null)
    f.sink.onResumed?.(resumption)
    if (resumption.reason === 'unavailable' && this.opts.serving() === 'up') {
      // Refused by a tokenizer that does not know yet what the launcher knows: ask again shortly, not in a loop.
      setTimeout(() => {
        if (this.flights.get(f.r.rid) === f && !f.waiting) this.route(f, processKey)
      }, UNAVAILABLE_RETRY_MS)
    } else this.route(f, processKey)
  }

  /** A lost request: dispatch it now, wait for the restart, or fail it (a crash loop, or no waiting allowed). */
  private route(f: Flight, processKey: string | null): void {
    const state = this.opts.serving()
    if (state === 'up') this.send(f)
    else if (state === 'restarting' && this.opts.restartWaitMs > 0) this.park(f)
    else {
      this.forget(f, 'crash_loop')
      f.sink.onError(
        state === 'broken' ? this.brokenError() : new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', `a process died (${processKey ?? 'unknown'}) and --restart-wait is 0; the request can be retried`),
      )
    }
  }

  private park(f: Flight): void {
    const timer = setTimeout(() => {
      this.forget(f, 'timed_out')
      f.sink.onError(new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', `no process came back within --restart-wait (${this.opts.restartWaitMs / 1000} s); the request can be retried`))
    }, this.opts.restartWaitMs)
    f.waiting = { since: performance.now(), timer }
    this.waiting.add(f)
  }

  private unpark(f: Flight, outcome: WaitOutcome): void {
    const w = f.waiting
    if (!w) return
    f.waiting = null
    this.waiting.delete(f)
    clearTimeout(w.timer)
    const waitedMs = performance.now() - w.since
    this.observer?.waited(waitedMs / 1000, outcome)
    if (outcome === 'served' && f.r.pending) {
      this.observer?.resumed(f.r.rid, f.r.pending, waitedMs)
      f.r.resumes++
      f.r.pending = null
    }
  }

  /** Drop every trace of the request here (it finished or failed). */
  private forget(f: Flight, outcome: WaitOutcome = 'aborted'): void {
    this.flights.delete(f.r.rid)
    this.running.delete(f.r.pipelineRid)
    this.unpark(f, outcome)
  }

  private brokenError(): SpanserveError {
    const why = this.opts.brokenReason?.() ?? 'a process keeps dying'
    return new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', `${why}; not waiting for its restart: retry later`)
  }
}
