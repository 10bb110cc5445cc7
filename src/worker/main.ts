/**
 * Worker process: one per (dp, tp) rank. Holds the ONNX Runtime session and the KV cache, runs the
 * steps its scheduler sends, samples, and answers with the new tokens.
 */
import type { Attributes } from '@opentelemetry/api'
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import type { ForwardBatch, PrefillEntry } from '../ipc/messages.ts'
import { openRunner } from './open-runner.ts'
import { prepareGrammar } from './grammar.ts'
import type { SamplingParams } from '../sampling/params.ts'
import * as tracing from '../tracing/index.ts'

await runChild('worker', async (ctx) => {
  const { dpRank, tpRank, log } = ctx
  const { runner, provider, close } = await openRunner(ctx)
  ctx.onShutdown(close)
  const toScheduler = new Outbox(ctx.endpoints.schedulers[dpRank]!)
  const grammarReady = (rid: string, sampling: SamplingParams): Promise<boolean> =>
    prepareGrammar(ctx.model, rid, sampling).then(
      () => true,
      (err: unknown) => (log.error({ err, rid }, 'grammar compile failed'), false),
    )

  const runStep = async (batch: ForwardBatch): Promise<void> => {
    for (const rid of batch.release) {
      runner.release(rid)
      tracing.reqFinish(rid)
    }
    if (batch.freeBlocks) runner.freeBlocks(batch.freeBlocks)
    const rids: string[] = []
    const tokens: number[] = []
    const failed: string[] = []
    let allReduceMs = 0
    const traced = tracing.isTracingEnabled()
    // Slices are recorded once the step's answer has left (below): the scheduler's turnaround pays for them, not the step.
    const prefillSlices: { entry: PrefillEntry; startNs: number; endNs: number; reduced: number | undefined }[] = []
    const t0 = performance.now()
    for (const entry of batch.prefill) {
      // A chunk of a sequence this worker lost (it restarted), or a cached prefix it no longer holds.
      if (!runner.canPrefill(entry)) {
        failed.push(entry.rid)
        continue
      }
      if (entry.sampling !== null) tracing.reqStart(entry.rid, entry.trace)
      // Constrained decoding: the grammar is compiled (or found in the cache) before the sequence's sampler is made.
      if (entry.sampling?.constraint && tpRank === 0 && !(await grammarReady(entry.rid, entry.sampling))) {
        failed.push(entry.rid)
        continue
      }
      const s0 = traced ? tracing.nowNs() : 0
      const { tokens: first, allReduceMs: reduced } = await runner.prefill(entry)
      allReduceMs += reduced ?? 0
      if (traced) prefillSlices.push({ entry, startNs: s0, endNs: tracing.nowNs(), reduced })
      if (entry.last) {
        rids.push(entry.rid)
        tokens.push(first[0]!)
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
    const decodeSlices: { startNs: number; endNs: number; reduced: number | undefined }[] = []
    // Continuous decode steps: after the first, every sequence takes its own last sampled token.
    for (let n = 0; decodable.length > 0 && n < batch.decodeSteps; n++) {
      const d0 = traced ? tracing.nowNs() : 0
      const { tokens: next, allReduceMs: reduced } = await runner.decode(decodable, given && n === 0 ? Int32Array.from(inputs) : undefined)
      allReduceMs += reduced ?? 0
      if (traced) decodeSlices.push({ startNs: d0, endNs: tracing.nowNs(), reduced })
      for (let i = 0; i < decodable.length; i++) {
        rids.push(decodable[i]!)
        tokens.push(next[i]!)
      }
    }
    const t2 = performance.now()
    toScheduler.post({ type: 'forward_out', step: batch.step, tpRank, allReduceMs, rids, tokens: Int32Array.from(tokens), failed, prefillMs: t1 - t0, decodeMs: t2 - t1 })
    for (const { entry, startNs, endNs, reduced } of prefillSlices) {
      const attributes: Attributes = { [tracing.SPANSERVE_PREFILL_START]: entry.start, [tracing.SPANSERVE_PREFILL_TOKENS]: entry.tokens.length, [tracing.SPANSERVE_STEP]: batch.step }
      if (reduced !== undefined) attributes[tracing.SPANSERVE_TP_ALL_REDUCE_MS] = reduced
      tracing.batchSlice([entry.rid], entry.last ? tracing.SLICE.prefillForward : tracing.SLICE.chunkedPrefill, startNs, endNs, attributes, entry.last ? 1 : 2)
    }
    for (const slice of decodeSlices) {
      // One slice per request for each session run they shared; folded into decode_loop below level 3.
      const attributes = tracing.batchAttributes(decodable.length, batch.step)
      // Only tensor-parallel runners all-reduce: at TP 1 the attribute would be a zero on every slice.
      if (slice.reduced !== undefined) attributes[tracing.SPANSERVE_TP_ALL_REDUCE_MS] = slice.reduced
      tracing.batchSlice(decodable, tracing.SLICE.decodeForward, slice.startNs, slice.endNs, attributes, 3)
    }
  }

  // Steps arrive in lockstep, but a chain keeps them ordered even if two are ever in flight.
  let chain = Promise.resolve()
  const inbox = new Inbox(
    ctx.endpoints.workers[dpRank]![tpRank]!,
    {
      ...ctx.commonHandlers,
      forward: (batch) => {
        chain = chain.then(() => runStep(batch))
      },
      reset: () => {
        toScheduler.discard()
        chain = chain.then(() => {
          for (const rid of runner.rids()) tracing.reqFinish(rid, { error: 'a server process failed' })
          runner.clear()
        })
      },
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  ctx.reportStats(() => ({ liveRequests: runner.size, scheduler: null, worker: { cachedTokens: runner.cachedTokens(), sequences: runner.size, cacheBlocks: runner.heldBlocks() } }))
  ctx.onShutdown(() => {
    inbox.close()
    toScheduler.close()
  })
  ctx.toServer.post({ type: 'ready', role: 'worker', dpRank, tpRank, pid: process.pid, detail: { provider, cpu_mem_arena: ctx.config.cpuMemArena, initial_old_space_mb: initialOldSpaceMb() } })
})

/** The V8 old-generation limit this process started with (src/server/spawn-child.ts), null for V8's default. */
function initialOldSpaceMb(): number | null {
  const flags = process.execArgv.filter((a) => a.startsWith('--initial-old-space-size='))
  const last = flags[flags.length - 1]
  return last === undefined ? null : Number(last.slice(last.indexOf('=') + 1))
}
