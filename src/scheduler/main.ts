/**
 * Scheduler process: one per data-parallel rank. Receives tokenized requests, batches them
 * continuously and drives its worker group step by step.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import { SchedulerLoop } from './loop.ts'
import { requestObserver } from './observer.ts'

await runChild('scheduler', async (ctx) => {
  const { config, model, dpRank, log, endpoints, contextLength } = ctx
  const workers = endpoints.workers[dpRank]!.map((addr) => new Outbox(addr))
  const toTokenizer = new Outbox(endpoints.tokenizer)
  const loop = new SchedulerLoop(
    {
      maxBatchSize: config.maxBatchSize,
      heavyClientStepSize: config.heavyClientStepSize,
      maxQueue: config.maxQueue,
      maxPrefillTokens: config.maxPrefillTokens,
      maxTotalTokens: config.maxTotalTokens,
      contextLength,
      eosTokenIds: model.eosTokenIds,
      tpSize: config.tpSize,
      // Rank 0 alone samples, so TP ranks must be told each step's tokens: lockstep.
      depth: config.tpSize > 1 || config.disableOverlapSchedule ? 1 : 2,
      decodeSteps: config.numContinuousDecodeSteps,
      prefixCache: config.enablePrefixCaching && !config.disableRadixCache,
      kvTransferTimeoutMs: config.disaggregationTransferTimeout * 1000,
    },
    {
      forward: (batch) => {
        for (const w of workers) w.post(batch)
      },
      output: (out) => toTokenizer.post(out),
      // Rank 0 samples, so it alone holds grammars.
      grammar: {
        prepare: (rid, constraint) => workers[0]!.post({ type: 'grammar_prepare', rid, constraint }),
        cancel: (rid) => workers[0]!.post({ type: 'grammar_cancel', rid }),
      },
      error: (err) => toTokenizer.post(err),
      // Decode instance: the worker (tp 1) receives prefill instances' KV.
      kv:
        config.disaggregationMode === 'decode'
          ? {
              expect: (rid, trace, room, blocks, from, tokens) => workers[0]!.post({ type: 'kv_expect', rid, trace, room, blocks, from, tokens }),
              cancel: (rid) => workers[0]!.post({ type: 'kv_cancel', rid }),
            }
          : undefined,
      observer: requestObserver(log),
      onStep: log.isLevelEnabled('debug')
        ? (batch, waiting) =>
            log.debug({ step: batch.step, prefill: batch.prefill.length, decode: batch.decode.length, decode_steps: batch.decodeSteps, release: batch.release.length, waiting }, 'step')
        : undefined,
    },
  )
  const inbox = new Inbox(
    endpoints.schedulers[dpRank]!,
    {
      ...ctx.commonHandlers,
      tokenized: (msg) => loop.submit(msg),
      abort: (msg) => {
        log.debug({ rid: msg.rid, reason: msg.reason }, 'request aborted')
        loop.abort(msg.rid)
      },
      // With several TP ranks every rank answers; rank 0's answer carries the sampled tokens.
      forward_out: (msg) => loop.onForwardOutput(msg),
      grammar_ready: (msg) => loop.grammarReady(msg),
      kv_arrived: (msg) => loop.kvArrived(msg),
      reset: (msg) => {
        log.warn({ reason: msg.reason }, 'dropping all request state')
        for (const w of workers) w.discard()
        loop.reset()
      },
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  void loop.run()
  ctx.reportStats(() => ({ liveRequests: loop.running + loop.waiting.length, scheduler: loop.takeStats(), worker: null }))
  ctx.onShutdown(() => {
    loop.close()
    inbox.close()
    toTokenizer.close()
    for (const w of workers) w.close()
  })
  ctx.toServer.post({ type: 'ready', role: 'scheduler', dpRank, tpRank: 0, pid: process.pid, detail: { contextLength } })
})
