/**
 * Worker process: one per (dp, tp) rank. Holds the ONNX Runtime session and the KV cache, runs the
 * steps its scheduler sends (step.ts), samples, and answers with the new tokens. This file only wires.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import { openRunner } from './open-runner.ts'
import { StepLoop } from './step.ts'
import { grammarPrepare } from './grammar.ts'
import { initialOldSpaceMb } from './heap-limit.ts'

await runChild('worker', async (ctx) => {
  const { dpRank, tpRank, log } = ctx
  const { runner, provider, close } = await openRunner(ctx)
  ctx.onShutdown(close)
  const toScheduler = new Outbox(ctx.endpoints.schedulers[dpRank]!)
  const steps = new StepLoop(runner, toScheduler, tpRank, { prepare: grammarPrepare(ctx.model, tpRank, log) })
  const inbox = new Inbox(
    ctx.endpoints.workers[dpRank]![tpRank]!,
    {
      ...ctx.commonHandlers,
      forward: (batch) => steps.forward(batch),
      reset: () => steps.reset(),
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
