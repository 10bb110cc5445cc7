/**
 * Continuous batching for one data-parallel rank. Finished and aborted sequences are released,
 * waiting requests join at step boundaries while the batch size and KV budget allow, prompts prefill
 * in chunks within a per-step token budget, and every sequence past its prefill decodes in the same
 * session run.
 *
 * Overlap (SGLang's overlap schedule): the next step is sent while the current one runs, so the
 * worker finds it queued and never idles through the scheduler's turnaround. The worker feeds each
 * sequence its own last sampled token, so the scheduler need not know it yet. A step's batch is
 * decided from what was sent, not what came back: `max_tokens` and the context length are known in
 * advance, so only a sequence that stops on EOS (or is aborted) runs one step too many, whose token
 * is dropped. With `depth` 1 (TP, or --disable-overlap-schedule) each step waits for the last.
 *
 * Continuous decode steps (SGLang's --num-continuous-decode-steps): a decode-only batch asks the
 * worker for up to `decodeSteps` steps in one message, never more than any of its sequences still
 * needs, so the hops between processes are paid once per several tokens. A batch that prefills runs
 * one step, so a new request's first token is not held back.
 *
 * KV (./kv-space.ts): admission reserves each request's KV and hands it a block table; with the
 * prefix cache on, a request whose prompt starts with a cached prefix prefills only the rest (its
 * first chunk starts there), and a prompt joins the cache once prefilled, staying there after its
 * request finishes.
 *
 * Prefill/decode disaggregation (decode instance): a request with a bootstrap room is admitted as
 * any other (its KV blocks allocated), then waits out of the batch until the prefill instance's KV is
 * in its blocks (the worker answers kv_arrived); its first chunk then starts past the KV transferred
 * (under one block, the last prompt token at least). A wait past --disaggregation-transfer-timeout,
 * or KV the worker refused, and it prefills here like any request.
 *
 * Fairness (./fairness.ts): admission takes the waiting client with the least virtual token
 * counter, and when more sequences are admitted than the batch holds, each step's slots are split
 * fairly between clients. With one client, first come, first served.
 */
import type {
  BatchTokenIdOutput,
  FinishReason,
  ProcessStats,
  RequestStats,
  ForwardBatch,
  ForwardBatchOutput,
  GrammarReady,
  KvArrived,
  PrefillEntry,
  ReqError,
  TokenizedGenerateReqInput,
} from '../ipc/messages.ts'
import { clientOf, VirtualTokenCounter } from './fairness.ts'
import { KvSpace } from './kv-space.ts'
import { WaitingQueue } from './queue.ts'
import type { SchedRequest } from './request.ts'
import { KV_BLOCK_TOKENS, transferredTokens } from '../ipc/kv-blocks.ts'
import type { ErrorCode } from '../errors.ts'
import type { OutputConstraint } from '../structured-output/constraint.ts'

/** How long a client gone idle still counts as a light client sharing the server (a chat's turns, a poller's requests). */
const LIGHT_CLIENT_WINDOW_MS = 2000

export interface LoopLimits {
  maxBatchSize: number
  maxQueue: number
  maxPrefillTokens: number
  maxTotalTokens: number
  contextLength: number
  eosTokenIds: readonly number[]
  /** Ranks that answer each step. */
  tpSize: number
  /** Steps in flight at once: 2 overlaps scheduling with the worker's step, 1 is lockstep. */
  depth: 1 | 2
  /** Most decode steps per forward batch (1 with TP: only rank 0 samples). */
  decodeSteps: number
  /** Most of a heavy client's sequences a step runs while a light client is around (0 or absent: no limit; fairness.ts stepLimit). */
  heavyClientStepSize?: number
  /** Keep finished prompts' KV and start new requests from the longest cached prefix (default off). */
  prefixCache?: boolean
  /** Decode instance: how long a request waits for its prompt's KV before it prefills here (absent: 30 s). */
  kvTransferTimeoutMs?: number
}

/** What the loop tells its process about each request's life, for tracing. */
export interface LoopObserver {
  queued(req: SchedRequest): void
  /** Admitted into the running batch (the channel gives its first prefill chunk this process's trace context). */
  admitted(req: SchedRequest): void
  /** Finished, aborted or failed (reason: null when finished normally). */
  ended(req: SchedRequest, reason: FinishReason | null, error: string | null): void
  /** Decode instance: admitted, and waiting for its prompt's KV from the prefill instance. */
  kvWaiting?(req: SchedRequest): void
  /** Its wait ended: `transferred`, `timeout` or `refused` (it prefills here). */
  kvWaited?(req: SchedRequest, outcome: 'transferred' | 'timeout' | 'refused' | 'aborted'): void
}

export interface LoopIo {
  /** Send a step to the worker group. */
  forward(batch: ForwardBatch): void
  /** New tokens and finishes, toward the tokenizer. */
  output(out: BatchTokenIdOutput): void
  /** A request that failed before producing output, toward the tokenizer. */
  error(err: ReqError): void
  /**
   * Constrained requests' grammars, compiled by the sampling worker off its step loop: a request
   * waits out of the queue until grammarReady() (vLLM's WAITING_FOR_FSM). Absent: no wait.
   */
  grammar?: { prepare(rid: string, constraint: OutputConstraint): void; cancel(rid: string): void }
  /**
   * Decode instance: the worker that receives prefill instances' KV (src/worker/kv-receiver.ts). A
   * request with a bootstrap room waits for it. Absent: such a request prefills here.
   */
  kv?: { expect(rid: string, trace: SchedRequest['trace'], room: number, blocks: Int32Array, from: number, tokens: Int32Array): void; cancel(rid: string): void }
  /** Observes each step as it is sent (debug logging). */
  onStep?(batch: ForwardBatch, waiting: number): void
  observer?: LoopObserver
}

interface PendingStep {
  batch: ForwardBatch
  answers: number
  primary: ForwardBatchOutput | null
  failed: Set<string>
  result: Promise<ForwardBatchOutput | null>
  resolve: (out: ForwardBatchOutput | null) => void
}

export class SchedulerLoop {
  readonly waiting: WaitingQueue
  readonly budget: KvSpace
  readonly fairness = new VirtualTokenCounter()
  /** Admitted requests whose prompt is not fully in the cache yet, in admission order. */
  private prefilling: SchedRequest[] = []
  /** Requests decoding, in admission order. */
  private decoding = new Map<string, SchedRequest>()
  /** Decode instance: admitted requests waiting for their prompt's KV, with the timer that stops the wait. */
  private readonly transferring = new Map<string, { req: SchedRequest; timer: NodeJS.Timeout }>()
  private release: string[] = []
  /** Requests whose grammar is compiling, out of the queue until it is ready. */
  private readonly compiling = new Map<string, SchedRequest>()
  private step = 0
  /** Steps in flight, oldest first: each completes once every TP rank has answered. */
  private pending: PendingStep[] = []
  /** Set while the loop is parked with nothing to run; kick() clears it. */
  private wakeUp: (() => void) | null = null
  private idleWaiters: (() => void)[] = []
  private closed = false
  private readonly eos: Set<number>

  constructor(
    private readonly limits: LoopLimits,
    private readonly io: LoopIo,
  ) {
    this.waiting = new WaitingQueue(limits.maxQueue)
    this.budget = new KvSpace(limits.maxTotalTokens, limits.prefixCache ?? false)
    this.eos = new Set(limits.eosTokenIds)
  }

  get running(): number {
    return this.prefilling.length + this.decoding.size + this.transferring.size
  }

  private batchSizes: number[] = []
  /** Steps limited for a light client since the last stats (stepSlots). */
  private limitedSteps = 0

  /** Gauges now, and the decode batch sizes seen since the last call. */
  takeStats(): NonNullable<ProcessStats['scheduler']> {
    const sizes = Int32Array.from(this.batchSizes)
    this.batchSizes = []
    const limitedSteps = this.limitedSteps
    this.limitedSteps = 0
    const stats: NonNullable<ProcessStats['scheduler']> = {
      running: this.running,
      waiting: this.waiting.length,
      kvUsedTokens: this.budget.usedTokens,
      kvTotalTokens: this.budget.total,
      batchSizes: sizes,
      limitedSteps,
    }
    if (this.budget.cacheEnabled) {
      const { queried, hit } = this.budget.takeCounts()
      stats.cacheTokens = this.budget.cacheTokens
      stats.cacheQueryTokens = queried
      stats.cacheHitTokens = hit
    }
    return stats
  }

  submit(msg: TokenizedGenerateReqInput): void {
    const reserved = msg.inputIds.length + msg.maxTokens
    if (reserved > this.budget.total) {
      this.fail(msg.rid, 'SPANSERVE_ERR_CONTEXT_LENGTH', `prompt (${msg.inputIds.length}) + max_tokens (${msg.maxTokens}) exceeds the KV budget of ${this.budget.total} tokens`)
      return
    }
    const now = performance.now()
    const req: SchedRequest = {
      ...msg,
      prefilled: 0,
      generated: 0,
      scheduled: 0,
      lastToken: -1,
      reserved,
      kv: null,
      cachedTokens: 0,
      firstChunk: 0,
      enqueuedAt: now,
      admittedAt: 0,
      prefillMs: 0,
      decodeMs: 0,
    }
    const constraint = msg.sampling.constraint
    if (constraint && this.io.grammar) {
      if (this.waiting.length + this.compiling.size >= this.waiting.capacity) {
        this.fail(msg.rid, 'SPANSERVE_ERR_QUEUE_FULL', `the waiting queue is full (${this.waiting.capacity} requests)`)
        return
      }
      this.compiling.set(msg.rid, req)
      this.io.observer?.queued(req)
      this.io.grammar.prepare(msg.rid, constraint)
      return
    }
    this.enqueue(req)
  }

  /** The worker compiled a request's grammar, or refused it (the refusal goes to the client as is). */
  grammarReady(msg: GrammarReady): void {
    const req = this.compiling.get(msg.rid)
    if (!req) return
    this.compiling.delete(msg.rid)
    if (msg.code !== null) {
      this.io.observer?.ended(req, 'error', msg.message)
      this.io.error({ type: 'req_error', rid: msg.rid, code: msg.code, message: msg.message ?? '', param: msg.param })
      return
    }
    if (!this.enqueue(req, false)) this.io.grammar?.cancel(msg.rid)
  }

  /** Into the waiting queue, or failed when it is full. */
  private enqueue(req: SchedRequest, observe = true): boolean {
    if (!this.waiting.push(req)) {
      this.fail(req.rid, 'SPANSERVE_ERR_QUEUE_FULL', `the waiting queue is full (${this.waiting.capacity} requests)`)
      if (!observe) this.io.observer?.ended(req, 'error', 'the waiting queue is full')
      return false
    }
    this.fairness.enter(clientOf(req))
    if (observe) this.io.observer?.queued(req)
    this.kick()
    return true
  }

  abort(rid: string): void {
    const compiling = this.compiling.get(rid)
    if (compiling) {
      this.compiling.delete(rid)
      this.io.grammar?.cancel(rid)
      this.io.observer?.ended(compiling, 'abort', null)
      return
    }
    const waiting = this.waiting.remove(rid)
    if (waiting) {
      // Its grammar, compiled and held for it, goes.
      if (waiting.sampling.constraint) this.io.grammar?.cancel(rid)
      this.fairness.leave(clientOf(waiting), false)
      this.io.observer?.ended(waiting, 'abort', null)
      return
    }
    // Its KV is released at the next step boundary, which kick() starts at once when idle.
    if (this.take(rid, 'abort', null)) this.kick()
  }

  /** Decode instance: a waiting request's KV is in its blocks (ok), or came unusable: it prefills, from past the KV or from the start. */
  kvArrived(msg: KvArrived): void {
    const waiting = this.transferring.get(msg.rid)
    if (!waiting) return
    const { req } = waiting
    if (msg.ok) {
      req.firstChunk = req.prefilled = transferredTokens(req.inputIds.length)
      req.cachedTokens = msg.cachedTokens
    }
    this.prefillAfterWait(req, msg.ok ? 'transferred' : 'refused')
  }

  /** The wait is over: the request prefills, past the KV transferred or (timeout, refused) from its own cached prefix. */
  private prefillAfterWait(req: SchedRequest, outcome: 'transferred' | 'timeout' | 'refused'): void {
    this.endWait(req, outcome)
    this.prefilling.push(req)
    this.kick()
  }

  private endWait(req: SchedRequest, outcome: 'transferred' | 'timeout' | 'refused' | 'aborted'): void {
    clearTimeout(this.transferring.get(req.rid)!.timer)
    this.transferring.delete(req.rid)
    this.io.observer?.kvWaited?.(req, outcome)
  }

  /** Decode instance: the request waits for its KV, or null when none would come (nothing to transfer past its own cached prefix). */
  private waitForKv(req: SchedRequest): boolean {
    const kv = this.io.kv
    const bootstrap = req.bootstrap
    if (kv === undefined || bootstrap === undefined || bootstrap.host !== null || req.kv === null) return false
    const whole = transferredTokens(req.inputIds.length)
    if (whole <= req.kv.cached) return false
    const timer = setTimeout(() => {
      if (!this.transferring.has(req.rid)) return
      this.io.kv?.cancel(req.rid)
      this.prefillAfterWait(req, 'timeout')
    }, this.limits.kvTransferTimeoutMs ?? 30_000)
    this.transferring.set(req.rid, { req, timer })
    this.io.observer?.kvWaiting?.(req)
    kv.expect(req.rid, req.trace, bootstrap.room, req.kv.blocks, req.kv.cached / KV_BLOCK_TOKENS, req.inputIds.subarray(0, whole))
    return true
  }

  /** A peer process died: everything in flight was failed by the launcher. */
  reset(): void {
    const all = [...this.compiling.values(), ...this.waiting.clear(), ...this.prefilling, ...this.decoding.values(), ...[...this.transferring.values()].map((w) => w.req)]
    this.compiling.clear()
    for (const w of this.transferring.values()) clearTimeout(w.timer)
    this.transferring.clear()
    for (const req of all) this.io.observer?.ended(req, 'error', 'a server process failed')
    this.prefilling = []
    this.decoding.clear()
    this.release = []
    this.budget.reset()
    this.fairness.reset()
    for (const p of this.pending) p.resolve(null)
    this.pending = []
  }

  onForwardOutput(out: ForwardBatchOutput): void {
    const p = this.pending.find((s) => s.batch.step === out.step)
    if (!p) return
    p.answers++
    if (out.tpRank === 0) p.primary = out
    for (const rid of out.failed) p.failed.add(rid)
    if (p.answers < this.limits.tpSize || p.primary === null) return
    p.resolve({ ...p.primary, failed: [...p.failed] })
  }

  close(): void {
    this.closed = true
    this.reset()
    this.kick()
  }

  /**
   * Resolves once the loop has nothing it can run: no step in flight and none to send (every request
   * done, or the rest waiting for room that only new events can make). Something to await where a
   * caller would otherwise guess how long the loop needs; at once when already so, or once closed.
   */
  idle(): Promise<void> {
    if (this.closed || this.wakeUp !== null) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  private kick(): void {
    const wake = this.wakeUp
    this.wakeUp = null
    wake?.()
  }

  private fail(rid: string, code: ErrorCode, message: string): void {
    this.io.error({ type: 'req_error', rid, code, message, param: null })
  }

  private finish(req: SchedRequest, reason: FinishReason, error: string | null): void {
    // Only a request that ran to its end has its whole prompt's KV in the worker for the cache.
    if (req.kv) this.budget.finish(req.inputIds, req.kv, reason === 'stop' || reason === 'length')
    req.kv = null
    this.fairness.leave(clientOf(req), true)
    this.release.push(req.rid)
    this.io.observer?.ended(req, reason, error)
  }

  /** Tokens a decoding sequence still has to generate once the steps sent are done (it takes part in the next step when above 0). */
  private remaining(req: SchedRequest): number {
    return Math.min(req.maxTokens - req.scheduled, this.limits.contextLength - req.inputIds.length - req.scheduled)
  }

  /** Sequences one step may run: the whole batch, or less for light clients beside heavy ones (fairness.ts stepLimit). */
  private stepSlots(): number {
    const share = this.limits.heavyClientStepSize ?? 0
    if (share <= 0) return this.limits.maxBatchSize
    const limit = this.fairness.stepLimit(performance.now(), LIGHT_CLIENT_WINDOW_MS, share)
    if (limit === null || limit >= this.limits.maxBatchSize) return this.limits.maxBatchSize
    this.limitedSteps++
    return Math.max(1, limit)
  }

  /** Decide the next step, or null when there is nothing to do. */
  private buildBatch(): ForwardBatch | null {
    // Decoders first: a sequence whose prompt completes in this step decodes from the next one on.
    let decoders: SchedRequest[] = []
    let steps = this.limits.decodeSteps
    for (const req of this.decoding.values()) {
      const left = this.remaining(req)
      if (left <= 0) continue
      decoders.push(req)
      steps = Math.min(steps, left)
    }
    const prefill: PrefillEntry[] = []
    let tokenBudget = this.limits.maxPrefillTokens
    const slots = this.limits.maxBatchSize
    // Admit from the queue while room remains in the batch (or, fairness.ts, the client holds less
    // than its fair share) and the KV budget; the client with the least counter first.
    const eligible = (client: string) => this.fairness.mayAdmit(client, this.running, slots)
    while (this.waiting.length > 0) {
      const next = this.waiting.next(this.fairness, eligible)
      if (next === undefined) break
      // Prompt logprobs (echo) need every prompt position computed: no cached prefix for them.
      const kv = this.budget.admit(next.inputIds, next.reserved, next.sampling.promptLogprobs === undefined)
      if (kv === null) break
      this.waiting.take(next)
      next.kv = kv
      next.prefilled = next.firstChunk = kv.cached
      next.cachedTokens = kv.cached
      next.admittedAt = performance.now()
      this.fairness.admitted(clientOf(next), next.inputIds.length)
      this.io.observer?.admitted(next)
      if (!this.waitForKv(next)) this.prefilling.push(next)
    }
    // More admitted than the step holds (several clients): this step's slots, split fairly.
    const stepSlots = this.stepSlots()
    const runs = this.running > stepSlots ? this.fairness.allot([...this.decoding.values(), ...this.prefilling], stepSlots) : null
    if (runs !== null) {
      decoders = decoders.filter((r) => runs.has(r))
      steps = Math.min(this.limits.decodeSteps, ...decoders.map((r) => this.remaining(r)))
    }
    let done = 0
    for (const req of this.prefilling) {
      if (tokenBudget <= 0) break
      if (runs !== null && !runs.has(req)) continue
      const take = Math.min(tokenBudget, req.inputIds.length - req.prefilled)
      const start = req.prefilled
      const last = start + take === req.inputIds.length
      const first = start === req.firstChunk
      const entry: PrefillEntry = {
        rid: req.rid,
        trace: first ? req.trace : null,
        tokens: req.inputIds.subarray(start, start + take),
        start,
        last,
        sampling: first ? req.sampling : null,
      }
      if (first) entry.blocks = req.kv!.blocks
      // Prefill instance: the prompt's KV goes to the decode instance once this chunk, its last, has run.
      const target = req.bootstrap
      if (last && target !== undefined && target.host !== null && target.port !== null) {
        // Its trace context too (a last chunk has none otherwise): the KV carries it to the decode side.
        entry.trace = req.trace
        entry.transfer = { room: target.room, host: target.host, port: target.port, tokens: req.inputIds.subarray(0, transferredTokens(req.inputIds.length)), cachedTokens: req.cachedTokens }
      }
      prefill.push(entry)
      req.prefilled += take
      tokenBudget -= take
      if (last) {
        req.scheduled = 1
        this.decoding.set(req.rid, req)
        done++
      }
    }
    // Not always the first ones: some sat out (fairness), or a request whose KV was transferred joined behind longer prompts.
    if (done > 0) this.prefilling = this.prefilling.filter((r) => !this.decoding.has(r.rid))
    const freeBlocks = this.budget.takeFreed()
    if (prefill.length === 0 && decoders.length === 0 && this.release.length === 0 && freeBlocks.length === 0) return null
    const decodeSteps = prefill.length > 0 ? 1 : steps
    for (const req of decoders) req.scheduled += decodeSteps
    const release = this.release
    this.release = []
    const decode = decoders.map((r) => r.rid)
    // Lockstep: the worker is told each input token; under overlap it feeds its own (not known here yet).
    const decodeTokens = this.limits.depth === 1 ? Int32Array.from(decoders, (r) => r.lastToken) : new Int32Array(0)
    return { type: 'forward', step: ++this.step, prefill, decode, decodeTokens, decodeSteps, release, freeBlocks }
  }

  private apply(batch: ForwardBatch, out: ForwardBatchOutput): void {
    for (const entry of batch.prefill) {
      const req = this.decoding.get(entry.rid) ?? this.prefilling.find((r) => r.rid === entry.rid)
      if (req) req.prefillMs += out.prefillMs
    }
    for (const rid of batch.decode) {
      const req = this.decoding.get(rid)
      if (req) req.decodeMs += out.decodeMs
    }
    const rids: string[] = []
    const tokens: number[] = []
    const finished: (FinishReason | null)[] = []
    const promptTokens: number[] = []
    const stats: (RequestStats | null)[] = []
    const cached: number[] = []
    // Logprobs pass through as the worker gave them, only when some request of the step asked.
    const logprobs: BatchTokenIdOutput['logprobs'] = out.logprobs ? [] : undefined
    let kvLost = false
    for (const rid of out.failed) {
      // A first chunk on no cached prefix loses no KV (the worker could not prepare the request);
      // any other failure means the worker lost KV, perhaps the cache's too.
      const req = this.decoding.get(rid) ?? this.prefilling.find((r) => r.rid === rid)
      const fresh = req !== undefined && req.kv !== null && req.kv.cached === 0 && batch.prefill.some((e) => e.rid === rid && e.sampling !== null)
      if (!fresh) kvLost = true
      const lost = "the worker lost this request's KV cache"
      if (this.take(rid, 'error', lost)) this.fail(rid, 'SPANSERVE_ERR_UNAVAILABLE', lost)
    }
    if (kvLost) this.budget.dropCache()
    for (let i = 0; i < out.rids.length; i++) {
      const rid = out.rids[i]!
      // Gone: aborted while the step ran, or stopped on EOS earlier (an overlapped step's or a later decode step's extra token).
      const req = this.decoding.get(rid)
      if (!req) continue
      const token = out.tokens[i]!
      req.generated++
      this.fairness.generated(clientOf(req), 1)
      req.lastToken = token
      // Its first token: the prompt's KV is whole in the worker, so it can be shared from now on.
      if (req.generated === 1 && req.kv) this.budget.prefilled(req.inputIds, req.kv)
      let reason: FinishReason | null = null
      if (!req.ignoreEos && this.eos.has(token)) reason = 'stop'
      else if (req.generated >= req.maxTokens || req.inputIds.length + req.generated >= this.limits.contextLength) reason = 'length'
      rids.push(rid)
      tokens.push(token)
      finished.push(reason)
      promptTokens.push(req.inputIds.length)
      cached.push(req.cachedTokens)
      logprobs?.push(out.logprobs![i] ?? null)
      stats.push(reason === null ? null : { queueMs: req.admittedAt - req.enqueuedAt, prefillMs: req.prefillMs, decodeMs: req.decodeMs })
      if (reason !== null) {
        this.decoding.delete(rid)
        this.finish(req, reason, null)
      }
    }
    if (rids.length > 0) {
      const output: BatchTokenIdOutput = { type: 'batch_token_ids', rids, tokens: Int32Array.from(tokens), finished, promptTokens: Int32Array.from(promptTokens), stats }
      if (this.budget.cacheEnabled) output.cachedTokens = Int32Array.from(cached)
      if (logprobs?.some((l) => l !== null)) output.logprobs = logprobs
      this.io.output(output)
    }
  }

  /** Remove an admitted request and return its budget; undefined when it is not running. */
  private take(rid: string, reason: FinishReason, error: string | null): SchedRequest | undefined {
    const waiting = this.transferring.get(rid)?.req
    if (waiting) {
      this.endWait(waiting, 'aborted')
      this.io.kv?.cancel(rid)
      this.finish(waiting, reason, error)
      return waiting
    }
    const i = this.prefilling.findIndex((r) => r.rid === rid)
    const req = i >= 0 ? this.prefilling.splice(i, 1)[0] : this.decoding.get(rid)
    if (req) {
      this.decoding.delete(rid)
      this.finish(req, reason, error)
    }
    return req
  }

  /** The step loop; returns when closed. */
  async run(): Promise<void> {
    while (!this.closed) {
      const batch = this.pending.length < this.limits.depth ? this.buildBatch() : null
      if (batch !== null) {
        let resolve!: (out: ForwardBatchOutput | null) => void
        const result = new Promise<ForwardBatchOutput | null>((r) => (resolve = r))
        this.pending.push({ batch, answers: 0, primary: null, failed: new Set(), result, resolve })
        this.io.onStep?.(batch, this.waiting.length)
        for (let i = 0; batch.decode.length > 0 && i < batch.decodeSteps && this.batchSizes.length < 100_000; i++) this.batchSizes.push(batch.decode.length)
        this.io.forward(batch)
        if (this.pending.length < this.limits.depth) continue
      }
      const oldest = this.pending[0]
      if (oldest === undefined) {
        const parked = new Promise<void>((resolve) => (this.wakeUp = resolve))
        this.notifyIdle()
        await parked
        continue
      }
      const out = await oldest.result
      // reset() empties the list and answers null; otherwise the oldest step is the one answered.
      if (out === null || this.pending[0] !== oldest) continue
      this.pending.shift()
      this.apply(oldest.batch, out)
    }
    this.notifyIdle()
  }
}
