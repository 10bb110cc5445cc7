/**
 * Worker process: one per (dp, tp) rank. Holds the ONNX Runtime session and the KV cache, runs the
 * steps its scheduler sends (step.ts), samples, and answers with the new tokens; compiles constrained
 * requests' grammars off the step loop when the scheduler asks (grammar.ts). This file only wires.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import { openRunner } from './open-runner.ts'
import { StepLoop } from './step.ts'
import { closeGrammars, compileFor, configureGrammar, grammarPrepare, grammarStats, releaseAllGrammars, releaseGrammar } from './grammar.ts'
import { initialOldSpaceMb } from './heap-limit.ts'
import { faultFor } from './fault-injection.ts'

await runChild('worker', async (ctx) => {
  const { dpRank, tpRank, log, config } = ctx
  const { runner, provider, close } = await openRunner(ctx)
  ctx.onShutdown(close)
  configureGrammar({ threads: config.grammarThreads, compileTimeoutMs: config.grammarCompileTimeout * 1000, threadMemoryBytes: config.grammarThreadMemory * 2 ** 20 })
  const toScheduler = new Outbox(ctx.endpoints.schedulers[dpRank]!)
  const steps = new StepLoop(runner, toScheduler, tpRank, { prepare: grammarPrepare(tpRank), released: releaseGrammar })
  const inbox = new Inbox(
    ctx.endpoints.workers[dpRank]![tpRank]!,
    {
      ...ctx.commonHandlers,
      forward: (batch) => {
        if (!faultFor(batch)) steps.forward(batch) // faultFor: tests only, off unless SPANSERVE_FAULT_INJECTION is set
      },
      reset: () => {
        steps.reset()
        releaseAllGrammars()
      },
      grammar_prepare: (msg) => {
        void compileFor(ctx.model, msg.rid, msg.constraint).then((v) => {
          if (!v.ok) log.info({ rid: msg.rid, code: v.code, reason: v.message }, 'grammar refused')
          toScheduler.post({ type: 'grammar_ready', rid: msg.rid, code: v.ok ? null : v.code, message: v.ok ? null : v.message, param: v.ok ? null : v.param })
        })
      },
      grammar_cancel: (msg) => releaseGrammar(msg.rid),
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  ctx.reportStats(() => {
    const grammar = grammarStats()
    return {
      liveRequests: runner.size,
      scheduler: null,
      worker: { cachedTokens: runner.cachedTokens(), sequences: runner.size, cacheBlocks: runner.heldBlocks(), grammarThreads: grammar.threads, grammarMemoryBytes: grammar.memoryBytes },
    }
  })
  ctx.onShutdown(() => {
    inbox.close()
    toScheduler.close()
    void closeGrammars()
  })
  ctx.toServer.post({ type: 'ready', role: 'worker', dpRank, tpRank, pid: process.pid, detail: { provider, cpu_mem_arena: ctx.config.cpuMemArena, initial_old_space_mb: initialOldSpaceMb() } })
})
