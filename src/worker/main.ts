/**
 * Worker process: one per (dp, tp) rank. Holds the ONNX Runtime session and the KV cache, runs the
 * steps its scheduler sends, samples, and answers with the new tokens.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import type { ForwardBatch } from '../ipc/messages.ts'
import { checkSignature } from '../model/load.ts'
import { openSession } from './session.ts'
import { ModelRunner } from './runner.ts'

await runChild('worker', async (ctx) => {
  const { config, model, dpRank, tpRank, log } = ctx
  const { session, provider } = await openSession(model.onnxPath, config.device, config.intraOpThreads, log)
  checkSignature(model, session.inputNames, session.outputNames)
  const runner = new ModelRunner(session, model)
  const toScheduler = new Outbox(ctx.endpoints.schedulers[dpRank]!)

  const runStep = async (batch: ForwardBatch): Promise<void> => {
    for (const rid of batch.release) runner.release(rid)
    const rids: string[] = []
    const tokens: number[] = []
    const failed: string[] = []
    const t0 = performance.now()
    for (const entry of batch.prefill) {
      if (entry.start > 0 && !runner.has(entry.rid)) {
        failed.push(entry.rid)
        continue
      }
      const { tokens: first } = await runner.prefill(entry)
      if (entry.last) {
        rids.push(entry.rid)
        tokens.push(first[0]!)
      }
    }
    const t1 = performance.now()
    const decodable = batch.decode.filter((rid) => {
      if (runner.has(rid)) return true
      failed.push(rid)
      return false
    })
    if (decodable.length > 0) {
      const { tokens: next } = await runner.decode(decodable)
      for (let i = 0; i < decodable.length; i++) {
        rids.push(decodable[i]!)
        tokens.push(next[i]!)
      }
    }
    const t2 = performance.now()
    toScheduler.post({ type: 'forward_out', step: batch.step, rids, tokens: Int32Array.from(tokens), failed, prefillMs: t1 - t0, decodeMs: t2 - t1 })
  }

  // Steps arrive in lockstep, but a chain keeps them ordered even if two are ever in flight.
  let chain = Promise.resolve()
  const inbox = new Inbox(
    ctx.endpoints.workers[dpRank]![tpRank]!,
    {
      forward: (batch) => {
        chain = chain.then(() => runStep(batch))
      },
      reset: () => {
        chain = chain.then(() => runner.clear())
      },
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  ctx.onShutdown(() => {
    inbox.close()
    toScheduler.close()
  })
  ctx.toServer.post({ type: 'ready', role: 'worker', dpRank, tpRank, pid: process.pid, detail: { provider } })
})
