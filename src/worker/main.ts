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
import { tcpAddress } from '../ipc/kv-blocks.ts'
import { KvReceiver } from './kv-receiver.ts'
import { KvSender } from './kv-sender.ts'

await runChild('worker', async (ctx) => {
  const { dpRank, tpRank, log, config } = ctx
  const { runner, provider, close } = await openRunner(ctx)
  ctx.onShutdown(close)
  configureGrammar({ threads: config.grammarThreads, compileTimeoutMs: config.grammarCompileTimeout * 1000, threadMemoryBytes: config.grammarThreadMemory * 2 ** 20 })
  const toScheduler = new Outbox(ctx.endpoints.schedulers[dpRank]!)
  // Prefill/decode disaggregation: a prefill instance's worker sends prompts' KV, a decode instance's receives it.
  const sender = config.disaggregationMode === 'prefill' ? new KvSender(runner, log) : null
  const steps = new StepLoop(runner, toScheduler, tpRank, { prepare: grammarPrepare(tpRank), released: releaseGrammar, transfer: sender ? (entry) => sender.send(entry) : undefined })
  const receiver =
    config.disaggregationMode === 'decode'
      ? new KvReceiver(tcpAddress(config.host, config.disaggregationBootstrapPort), {
          runner,
          toScheduler,
          log,
          serialize: (task) => steps.after(task),
          holdMs: config.disaggregationTransferTimeout * 1000,
          contextLength: ctx.contextLength,
        })
      : null
  const inbox = new Inbox(
    ctx.endpoints.workers[dpRank]![tpRank]!,
    {
      ...ctx.commonHandlers,
      forward: (batch) => {
        if (!faultFor(batch)) steps.forward(batch) // faultFor: tests only, off unless SPANSERVE_FAULT_INJECTION is set
      },
      reset: () => {
        steps.reset()
        receiver?.reset()
        releaseAllGrammars()
      },
      kv_expect: (msg) => receiver?.expect(msg),
      kv_cancel: (msg) => receiver?.cancel(msg.rid),
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
  const bootstrap = receiver ? await receiver.bind() : null
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
    receiver?.close()
    sender?.close()
    toScheduler.close()
    void closeGrammars()
  })
  ctx.toServer.post({
    type: 'ready',
    role: 'worker',
    dpRank,
    tpRank,
    pid: process.pid,
    detail: { provider, cpu_mem_arena: ctx.config.cpuMemArena, initial_old_space_mb: initialOldSpaceMb(), ...(bootstrap ? { kv_bootstrap: bootstrap } : {}) },
  })
})
