/**
 * The worker's step loop: each ForwardBatch from the scheduler runs in order, releases first, then
 * its prefill chunks, then its decode steps (continuous decode steps take each sequence's own last
 * token), and its tokens go back as one forward_out. The step's slices are recorded once the answer
 * has left, so the scheduler's turnaround pays for them, not the step.
 */
import type { Attributes } from '@opentelemetry/api'
import type { Outbox } from '../ipc/channel.ts'
import type { ForwardBatch, ForwardBatchOutput, PrefillEntry, TokenLogprobs } from '../ipc/messages.ts'
import * as tracing from '../tracing/index.ts'
import type { StepRunner } from './step-runner.ts'

export interface StepLoopOptions {
  /**
   * Readies a sequence before its first chunk runs (a grammar compiled, say): false fails it. Return
   * true, not a promise, when there is nothing to wait for: the step does not yield for it.
   */
  prepare?: (entry: PrefillEntry) => Promise<boolean> | true
  /** A sequence left (finished, aborted, or dropped by a reset): what prepare readied for it can go. */
  released?: (rid: string) => void
  /** A prefill instance's last chunk that carries a transfer has run: its prompt's KV goes to the decode instance (kv-sender.ts). */
  transfer?: (entry: PrefillEntry) => void
}

interface PrefillSlice {
  entry: PrefillEntry
  /** Prompt tokens the sequence started from in the prefix cache. */
  cached: number
  startNs: number
  endNs: number
  reduced: number | undefined
}

interface DecodeSlice {
  startNs: number
  endNs: number
  reduced: number | undefined
}

/** How long the worker has no sequence before it gives memory back (a pause between requests is shorter). */
const IDLE_TRIM_MS = 2000

export class StepLoop {
  // Steps arrive in lockstep, but a chain keeps them ordered even if two are ever in flight.
  private chain = Promise.resolve()
  /** Traced sequences still prefilling: where their first chunk started (their cached prefix), for the slices. */
  private readonly cachedPrefix = new Map<string, number>()
  /** Armed when the worker runs dry: memory the burst needed is given back if no step comes first. */
  private idleTrim: NodeJS.Timeout | null = null

  constructor(
    private readonly runner: StepRunner,
    private readonly toScheduler: Outbox,
    private readonly tpRank: number,
    private readonly options: StepLoopOptions = {},
  ) {}

  forward(batch: ForwardBatch): void {
    if (this.idleTrim) clearTimeout(this.idleTrim)
    this.idleTrim = null
    this.chain = this.chain.then(() => this.run(batch)).then(() => this.armTrim())
  }

  /** Runs `task` once every step received before it has run (KV written into blocks those steps may free). */
  after(task: () => void): void {
    this.chain = this.chain.then(task)
  }

  private armTrim(): void {
    if (this.runner.size > 0 || this.idleTrim) return
    this.idleTrim = setTimeout(() => {
      this.idleTrim = null
      this.chain = this.chain.then(() => this.runner.trim())
    }, IDLE_TRIM_MS)
    this.idleTrim.unref()
  }

  /** A server process failed: drop what was queued for the scheduler and every sequence. */
  reset(): void {
    this.toScheduler.discard()
    this.chain = this.chain.then(() => {
      for (const rid of this.runner.rids()) {
        tracing.reqFinish(rid, { error: 'a server process failed' })
        this.options.released?.(rid)
      }
      this.runner.clear()
      this.cachedPrefix.clear()
    })
  }

  private async run(batch: ForwardBatch): Promise<void> {
    const { runner } = this
    for (const rid of batch.release) {
      runner.release(rid)
      this.options.released?.(rid)
      tracing.reqFinish(rid)
      this.cachedPrefix.delete(rid)
    }
    if (batch.freeBlocks) runner.freeBlocks(batch.freeBlocks)
    const rids: string[] = []
    const tokens: number[] = []
    const failed: string[] = []
    // Only sequences that asked for logprobs have them: the step's list exists only then.
    let logprobs: (TokenLogprobs | null)[] | null = null
    let allReduceMs = 0
    const traced = tracing.isTracingEnabled()
    const prefillSlices: PrefillSlice[] = []
    const transfers: PrefillEntry[] = []
    const t0 = performance.now()
    for (const entry of batch.prefill) {
      // A chunk of a sequence this worker lost (it restarted), or a cached prefix it no longer holds.
      if (!runner.canPrefill(entry)) {
        failed.push(entry.rid)
        continue
      }
      if (entry.sampling !== null) {
        tracing.reqStart(entry.rid, entry.trace)
        const ready = this.options.prepare?.(entry) ?? true
        if (ready !== true && !(await ready)) {
          failed.push(entry.rid)
          continue
        }
      }
      const s0 = traced ? tracing.nowNs() : 0
      const { tokens: first, allReduceMs: reduced } = await runner.prefill(entry)
      allReduceMs += reduced ?? 0
      if (traced) {
        const cached = entry.sampling !== null ? entry.start : (this.cachedPrefix.get(entry.rid) ?? 0)
        if (entry.last) this.cachedPrefix.delete(entry.rid)
        else this.cachedPrefix.set(entry.rid, cached)
        prefillSlices.push({ entry, cached, startNs: s0, endNs: tracing.nowNs(), reduced })
      }
      if (entry.last) {
        if (entry.transfer) transfers.push(entry)
        rids.push(entry.rid)
        tokens.push(first[0]!)
        const lp = runner.takeLogprobs(entry.rid)
        if (lp) (logprobs ??= [])[rids.length - 1] = lp
      }
    }
    const t1 = performance.now()
    const decodable: string[] = []
    const inputs: number[] = []
    const given = batch.decodeTokens.length > 0
    for (let i = 0; i < batch.decode.length; i++) {
      const rid = batch.decode[i]!
      if (runner.has(rid)) {
        decodable.push(rid)
        if (given) inputs.push(batch.decodeTokens[i]!)
      } else failed.push(rid)
    }
    const decodeSlices: DecodeSlice[] = []
    // Continuous decode steps: after the first, every sequence takes its own last sampled token.
    for (let n = 0; decodable.length > 0 && n < batch.decodeSteps; n++) {
      const d0 = traced ? tracing.nowNs() : 0
      const { tokens: next, allReduceMs: reduced } = await runner.decode(decodable, given && n === 0 ? Int32Array.from(inputs) : undefined)
      allReduceMs += reduced ?? 0
      if (traced) decodeSlices.push({ startNs: d0, endNs: tracing.nowNs(), reduced })
      for (let i = 0; i < decodable.length; i++) {
        rids.push(decodable[i]!)
        tokens.push(next[i]!)
        const lp = runner.takeLogprobs(decodable[i]!)
        if (lp) (logprobs ??= [])[rids.length - 1] = lp
      }
    }
    const t2 = performance.now()
    const out: ForwardBatchOutput = { type: 'forward_out', step: batch.step, tpRank: this.tpRank, allReduceMs, rids, tokens: Int32Array.from(tokens), failed, prefillMs: t1 - t0, decodeMs: t2 - t1 }
    if (logprobs !== null) out.logprobs = Array.from(rids, (_, i) => logprobs![i] ?? null)
    // The slices go to the tracing thread (and its span journal) before the tokens leave: a kill
    // right after a token was delivered then rarely loses the slice that made it.
    recordSlices(batch.step, prefillSlices, decodable, decodeSlices)
    // Before the tokens: the decode instance waits on the KV; the client here only on one token.
    for (const entry of transfers) this.options.transfer?.(entry)
    this.toScheduler.post(out)
  }
}

function recordSlices(step: number, prefillSlices: readonly PrefillSlice[], decodable: readonly string[], decodeSlices: readonly DecodeSlice[]): void {
  for (const { entry, cached, startNs, endNs, reduced } of prefillSlices) {
    const attributes: Attributes = {
      [tracing.SPANSERVE_PREFILL_START]: entry.start,
      [tracing.SPANSERVE_PREFILL_TOKENS]: entry.tokens.length,
      [tracing.SPANSERVE_PREFILL_CACHED_TOKENS]: cached,
      [tracing.SPANSERVE_PREFILL_PREFILL_TOKENS]: entry.start + entry.tokens.length - cached,
      [tracing.SPANSERVE_STEP]: step,
    }
    if (reduced !== undefined) attributes[tracing.SPANSERVE_TP_ALL_REDUCE_MS] = reduced
    tracing.batchSlice([entry.rid], entry.last ? tracing.SLICE.prefillForward : tracing.SLICE.chunkedPrefill, startNs, endNs, attributes, entry.last ? 1 : 2)
  }
  for (const slice of decodeSlices) {
    // One slice per request for each session run they shared; folded into decode_loop below level 3.
    const attributes = tracing.batchAttributes(decodable.length, step)
    // Only tensor-parallel runners all-reduce: at TP 1 the attribute would be a zero on every slice.
    if (slice.reduced !== undefined) attributes[tracing.SPANSERVE_TP_ALL_REDUCE_MS] = slice.reduced
    tracing.batchSlice(decodable, tracing.SLICE.decodeForward, slice.startNs, slice.endNs, attributes, 3)
  }
}
