/**
 * The worker's grammar threads: constraints compile there, never on the step loop, and each
 * request's matchers then run in the thread that compiled its grammar (a compiled grammar cannot
 * leave its WebAssembly instance). The policy that keeps one request from holding up the others:
 *
 * - A compile goes to a thread that serves no request's masks (a thread inside a compile cannot
 *   answer a mask), or to a new thread up to `threads`; else the request waits, out of the batch,
 *   until a thread is free. A constraint cached in a thread is taken there at once (no compile).
 *   At most `compiles` compiles run at once, so that they leave the model its cores.
 * - A compile has a budget: past it the thread is ended (the work is abandoned, its memory given
 *   back) and the request refused; the refusal is remembered, so a repeat costs nothing.
 * - A thread whose WebAssembly memory (cache included) grew past `threadMemoryBytes` is ended once
 *   its requests are done, and an idle thread beyond the first after `idleMs`: memory comes back.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ErrorCode } from '../errors.ts'
import { constraintKey, type OutputConstraint } from './constraint.ts'
import { maskRow, type Utf8Guard } from './engine.ts'
import { slotWords, SLOT_DONE, SLOT_MASK, SLOT_STATE, STATE_FAILED, STATE_TERMINATED, type FromThread, type ThreadStart, type ToThread } from './thread-protocol.ts'

export interface GrammarPoolOptions {
  start: Omit<ThreadStart, 'cacheSize'>
  /** For the UTF-8 guard the masks are completed with (engine.ts Utf8Guard). */
  guard: Utf8Guard
  threads: number
  compileTimeoutMs: number
  threadMemoryBytes: number
  /** Idle threads beyond the first end after this long. */
  idleMs?: number
  /**
   * Compiles (not cache hits) running at once. A compile is a core's worth of work for up to the
   * budget: several at once took the cores the model runs on (4 concurrent costly schemas read 3.75x
   * on plain streams' ITL p99 on 2 cores). Default: a quarter of the cores, at least 1.
   */
  compiles?: number
  log?: { warn(obj: object, msg: string): void }
}

export type Verdict = { ok: true; cacheHit: boolean; ms: number } | { ok: false; code: ErrorCode; message: string; param: string | null }

/** Refusals remembered, by constraint key (a client repeating a bad or costly constraint pays once). */
const REFUSALS_KEPT = 256
const CACHE_SIZE = 64
/** How long the sampler waits for a mask before it takes the thread as lost. */
const MASK_WAIT_MS = 30_000

const WHAT: Record<OutputConstraint['type'], string> = {
  json_schema: 'the JSON schema',
  json_object: 'the JSON object grammar',
  regex: 'the regular expression',
  choice: 'the choices',
  grammar: 'the grammar',
  structural_tag: 'the structural tag',
  tool_calls: 'the tool call grammar',
}

interface Waiting {
  rid: string
  constraint: OutputConstraint
  key: string
  resolve: (v: Verdict) => void
}

class Lane {
  compiling = false
  /** The key being compiled: a request for the same one waits for it rather than compiling it again elsewhere. */
  compilingKey: string | null = null
  /** The run is a compile (the thread had not compiled the key), not a cache hit: it counts against the pool's compiles. */
  compilingCold = false
  readonly leases = new Set<string>()
  /** Keys this thread has compiled (its cache may have evicted some: a hit is asked for, not assumed). */
  readonly keys = new Set<string>()
  memoryBytes = 0
  dead = false
  readonly ready: Promise<void>
  private readonly jobs = new Map<number, (m: Extract<FromThread, { type: 'compiled' }>) => void>()
  private idle: NodeJS.Timeout | null = null

  constructor(
    readonly worker: Worker,
    onExit: (lane: Lane) => void,
  ) {
    this.ready = new Promise((resolve, reject) => {
      worker.on('message', (m: FromThread) => {
        this.memoryBytes = m.memoryBytes
        if (m.type === 'ready') return resolve()
        const done = this.jobs.get(m.job)
        this.jobs.delete(m.job)
        done?.(m)
      })
      worker.once('error', reject)
    })
    worker.on('exit', () => {
      this.dead = true
      for (const done of this.jobs.values()) done({ type: 'compiled', job: -1, ok: false, miss: false, reason: 'the grammar thread ended', memoryBytes: 0 })
      this.jobs.clear()
      onExit(this)
    })
  }

  post(m: ToThread): void {
    if (!this.dead) this.worker.postMessage(m)
  }

  compile(job: number, m: Extract<ToThread, { type: 'compile' }>): Promise<Extract<FromThread, { type: 'compiled' }>> {
    return new Promise((resolve) => {
      this.jobs.set(job, resolve)
      this.post(m)
    })
  }

  /** Busy again: an idle timer set when it went idle no longer applies. */
  touch(): void {
    if (this.idle) clearTimeout(this.idle)
    this.idle = null
  }

  whenIdle(ms: number, fn: () => void): void {
    this.touch()
    this.idle = setTimeout(fn, ms)
    this.idle.unref()
  }

  end(): void {
    this.touch()
    this.dead = true
    void this.worker.terminate()
  }
}

export class GrammarPool {
  private readonly lanes: Lane[] = []
  private readonly queue: Waiting[] = []
  private readonly byRid = new Map<string, Lane>()
  private readonly matchersByRid = new Map<string, RemoteMatcher[]>()
  private readonly refusals = new Map<string, { code: ErrorCode; reason: string }>()
  private nextJob = 1
  private nextMatcher = 1
  private closed = false

  private readonly maxCompiles: number

  constructor(private readonly opts: GrammarPoolOptions) {
    this.maxCompiles = opts.compiles ?? Math.max(1, Math.floor(availableParallelism() / 4))
  }

  /** Compile (or find) `rid`'s grammar in a thread; the request holds it until release(rid). */
  prepare(rid: string, constraint: OutputConstraint): Promise<Verdict> {
    return new Promise((resolve) => {
      this.queue.push({ rid, constraint, key: constraintKey(constraint), resolve })
      this.pump()
    })
  }

  /** Whether `rid` holds a prepared grammar. */
  holds(rid: string): boolean {
    return this.byRid.has(rid)
  }

  /** A new matcher at the start of `rid`'s grammar (one per sequence); synchronous, as the sampler is. */
  matcher(rid: string): RemoteMatcher {
    const lane = this.byRid.get(rid)
    if (!lane) throw new Error(`a constrained sequence (${rid}) started without its grammar prepared`)
    const m = new RemoteMatcher(lane, this.nextMatcher++, this.opts.start.vocabSize, this.opts.start.stopTokenIds, this.opts.guard, rid)
    const list = this.matchersByRid.get(rid)
    if (list) list.push(m)
    else this.matchersByRid.set(rid, [m])
    return m
  }

  /** The request is done (or gone): its matchers close and its thread may take other compiles. */
  release(rid: string): void {
    const waiting = this.queue.findIndex((w) => w.rid === rid)
    if (waiting >= 0) this.queue.splice(waiting, 1)[0]!.resolve({ ok: false, code: 'SPANSERVE_ERR_INVALID_REQUEST', message: 'the request left before its grammar was compiled', param: null })
    for (const m of this.matchersByRid.get(rid) ?? []) m.close()
    this.matchersByRid.delete(rid)
    const lane = this.byRid.get(rid)
    if (!lane) return
    this.byRid.delete(rid)
    lane.leases.delete(rid)
    lane.post({ type: 'release', rid })
    if (lane.leases.size === 0) this.settle(lane)
    this.pump()
  }

  releaseAll(): void {
    for (const rid of [...this.byRid.keys(), ...this.queue.map((w) => w.rid)]) this.release(rid)
  }

  /** Threads, and their WebAssembly memory in all. */
  stats(): { threads: number; memoryBytes: number } {
    return { threads: this.lanes.length, memoryBytes: this.lanes.reduce((n, l) => n + l.memoryBytes, 0) }
  }

  async close(): Promise<void> {
    this.closed = true
    this.releaseAll()
    await Promise.all(this.lanes.map((l) => l.worker.terminate()))
  }

  /** A thread with nothing to serve: ended when its memory grew past the bound, or later if idle. */
  private settle(lane: Lane): void {
    if (lane.compiling || lane.leases.size > 0 || lane.dead) return
    lane.worker.unref()
    if (lane.memoryBytes > this.opts.threadMemoryBytes) {
      this.remove(lane)
      return
    }
    lane.whenIdle(this.opts.idleMs ?? 60_000, () => {
      if (this.lanes.length > 1 && !lane.compiling && lane.leases.size === 0) this.remove(lane)
    })
  }

  private remove(lane: Lane): void {
    const i = this.lanes.indexOf(lane)
    if (i >= 0) this.lanes.splice(i, 1)
    lane.end()
  }

  private spawn(): Lane {
    const start: ThreadStart = { ...this.opts.start, cacheSize: CACHE_SIZE }
    const worker = new Worker(new URL('./grammar-thread-entry.mjs', import.meta.url), { workerData: start })
    const lane = new Lane(worker, (l) => {
      const i = this.lanes.indexOf(l)
      if (i >= 0) this.lanes.splice(i, 1)
      for (const [rid, owner] of this.byRid) if (owner === l) this.byRid.delete(rid)
      if (!this.closed) this.pump()
    })
    // After the listeners, which ref the thread's port: a process with nothing else to do may exit.
    worker.unref()
    lane.ready.catch((err: unknown) => this.opts.log?.warn({ err }, 'a grammar thread failed to start'))
    this.lanes.push(lane)
    return lane
  }

  /** Give waiting requests a thread, in arrival order, as far as threads allow. */
  private pump(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i]!
      const refused = this.refusals.get(w.key)
      if (refused) {
        this.queue.splice(i, 1)
        w.resolve(this.refusal(w, refused.code, refused.reason))
        continue
      }
      // The same constraint compiling already (n > 1, or clients sending one schema at once): it will be a hit.
      if (this.lanes.some((l) => l.compilingKey === w.key)) {
        i++
        continue
      }
      const free = (l: Lane) => !l.dead && !l.compiling
      const cold = this.lanes.filter((l) => l.compilingCold).length >= this.maxCompiles
      const lane =
        this.lanes.find((l) => free(l) && l.keys.has(w.key)) ??
        (cold ? undefined : (this.lanes.find((l) => free(l) && l.leases.size === 0) ?? (this.lanes.length < this.opts.threads && !this.closed ? this.spawn() : undefined)))
      if (!lane) {
        i++
        continue
      }
      this.queue.splice(i, 1)
      void this.run(lane, w, lane.keys.has(w.key) && lane.leases.size > 0)
    }
  }

  private async run(lane: Lane, w: Waiting, hitOnly: boolean): Promise<void> {
    lane.compiling = true
    lane.compilingKey = w.key
    lane.compilingCold = !lane.keys.has(w.key)
    lane.touch()
    // Work in flight keeps the process alive (an idle thread does not: see spawn).
    lane.worker.ref()
    try {
      await lane.ready
    } catch {
      lane.compiling = false
      lane.compilingKey = null
      lane.compilingCold = false
      this.queue.unshift(w)
      return this.remove(lane)
    }
    const job = this.nextJob++
    let timer: NodeJS.Timeout | null = null
    const timedOut = new Promise<null>((resolve) => {
      // A cached grammar needs no budget: the thread answers at once.
      if (!hitOnly) timer = setTimeout(() => resolve(null), this.opts.compileTimeoutMs)
    })
    const answer = await Promise.race([lane.compile(job, { type: 'compile', job, rid: w.rid, constraint: w.constraint, hitOnly }), timedOut])
    if (timer) clearTimeout(timer)
    lane.compiling = false
    lane.compilingKey = null
    lane.compilingCold = false
    if (answer === null) {
      // The thread is inside the compile and cannot be interrupted: it is ended, its work abandoned.
      this.remove(lane)
      const seconds = this.opts.compileTimeoutMs / 1000
      this.remember(
        w.key,
        'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX',
        `takes longer than ${seconds} s to compile (--grammar-compile-timeout); make it smaller (shorter maxLength, fewer or smaller repetitions, fewer alternatives)`,
      )
      w.resolve(this.refusal(w, 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX', this.refusals.get(w.key)!.reason))
    } else if (answer.ok) {
      lane.keys.add(w.key)
      lane.leases.add(w.rid)
      this.byRid.set(w.rid, lane)
      w.resolve({ ok: true, cacheHit: answer.cacheHit, ms: answer.ms })
    } else if (answer.miss) {
      lane.keys.delete(w.key)
      this.queue.unshift(w)
    } else if (lane.dead) {
      w.resolve({ ok: false, code: 'SPANSERVE_ERR_INTERNAL', message: 'the grammar thread ended during the compile', param: null })
    } else {
      this.remember(w.key, 'SPANSERVE_ERR_INVALID_REQUEST', `cannot be compiled: ${answer.reason}`)
      w.resolve(this.refusal(w, 'SPANSERVE_ERR_INVALID_REQUEST', this.refusals.get(w.key)!.reason))
    }
    if (!lane.dead) this.settle(lane)
    this.pump()
  }

  private remember(key: string, code: ErrorCode, reason: string): void {
    this.refusals.set(key, { code, reason })
    if (this.refusals.size > REFUSALS_KEPT) this.refusals.delete(this.refusals.keys().next().value!)
  }

  private refusal(w: Waiting, code: ErrorCode, reason: string): Verdict {
    const param = w.constraint.param ?? null
    return { ok: false, code, message: `${param ? `${param}: ` : ''}${WHAT[w.constraint.type]} ${reason}`, param }
  }
}

/**
 * One sequence's matcher, seen from the sampler: the mask is asked for when a token is accepted (so
 * the thread computes it while the next forward runs) and waited for when the next draw needs it.
 */
export class RemoteMatcher {
  private readonly slot: Int32Array
  private readonly words: number
  /** Masks asked for so far (the slot's count reaches it when the last is written). */
  private asked = 1
  private pending: number[] = []
  private pendingLead = 0
  private closed = false

  constructor(
    private readonly lane: Lane,
    private readonly id: number,
    vocabSize: number,
    private readonly stops: readonly number[],
    private readonly guard: Utf8Guard,
    rid: string,
  ) {
    this.words = slotWords(vocabSize)
    const sab = new SharedArrayBuffer(this.words * 4)
    this.slot = new Int32Array(sab)
    lane.post({ type: 'open', id, rid, slot: sab })
  }

  apply(logits: Float32Array, offset: number, vocab: number): void {
    this.wait()
    if (this.pending.length > 0) {
      this.flush()
      this.wait()
    }
    const state = this.slot[SLOT_STATE]
    if (state === STATE_FAILED) throw new Error('the grammar engine failed on this sequence')
    maskRow(state === STATE_TERMINATED ? null : this.slot.subarray(SLOT_MASK, this.words), logits, offset, vocab, this.stops)
    this.guard.apply(this.pendingLead, logits, offset)
  }

  accept(token: number): void {
    this.pendingLead = this.guard.next(this.pendingLead, token)
    this.pending.push(token)
    // Sent now when the thread is free for it, so the next mask is ready by the next draw.
    if (Atomics.load(this.slot, SLOT_DONE) === this.asked) this.flush()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.lane.post({ type: 'close', id: this.id })
  }

  private flush(): void {
    this.lane.post({ type: 'accept', id: this.id, tokens: this.pending })
    this.pending = []
    this.asked++
  }

  private wait(): void {
    for (;;) {
      const done = Atomics.load(this.slot, SLOT_DONE)
      if (done === this.asked) return
      if (this.lane.dead) throw new Error('the grammar thread of this sequence ended')
      if (Atomics.wait(this.slot, SLOT_DONE, done, MASK_WAIT_MS) === 'timed-out') throw new Error(`no grammar mask within ${MASK_WAIT_MS} ms`)
    }
  }
}
