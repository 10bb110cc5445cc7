/**
 * Tokenizer process: tokenizes requests (and renders chat templates), checks them against the
 * model, dispatches each to a data-parallel scheduler, and turns the token ids coming back into
 * text, batch by batch. This file only wires: intake.ts takes requests in, request-state.ts holds
 * the live ones, outputs.ts detokenizes, group-events.ts handles group failures and resets.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import { TextTokenizer } from './tokenize.ts'
import { DpDispatcher } from './dispatch.ts'
import { RequestStates } from './request-state.ts'
import { Intake } from './intake.ts'
import { detokenizeBatch } from './outputs.ts'
import { onGroupState, onReset } from './group-events.ts'
import { answerTokenize } from './tokenize-api.ts'
import { KV_BLOCK_TOKENS } from '../ipc/kv-blocks.ts'
import * as tracing from '../tracing/index.ts'

await runChild('tokenizer', async (ctx) => {
  const { config, model, log, endpoints, contextLength, toServer } = ctx
  const tok = new TextTokenizer(model.dir)
  const schedulers = endpoints.schedulers.map((addr) => new Outbox(addr))
  // With one group there is nothing to choose: no prefix index is kept.
  const cacheAware = schedulers.length > 1 && config.enablePrefixCaching && !config.disableRadixCache
  const dispatcher = new DpDispatcher(
    schedulers.length,
    cacheAware ? { capBlocks: Math.ceil(config.maxTotalTokens / KV_BLOCK_TOKENS), absThreshold: config.dpBalanceAbsThreshold, relThreshold: config.dpBalanceRelThreshold } : undefined,
  )
  const states = new RequestStates(dispatcher)
  const intake = new Intake({ tok, model, contextLength, dispatcher, states, schedulers, toServer, log })
  const outputs = { states, schedulers, toServer, repeatsRids: config.numContinuousDecodeSteps > 1 }
  const groups = { states, dispatcher, schedulers, toServer, log }

  const inbox = new Inbox(
    endpoints.tokenizer,
    {
      ...ctx.commonHandlers,
      generate: (req) => void intake.generate(req),
      abort: (msg) => {
        const t = intake.abort(msg.rid) ? undefined : states.forget(msg.rid)
        if (t) schedulers[t.dp]!.post(msg)
        tracing.reqAbort(msg.rid, msg.reason)
      },
      batch_token_ids: (batch) => detokenizeBatch(outputs, batch),
      req_error: (msg) => {
        states.forget(msg.rid)
        tracing.reqFinish(msg.rid, { error: `${msg.code}: ${msg.message}` })
        toServer.post(msg)
      },
      group_state: (msg) => onGroupState(groups, msg),
      reset: (msg) => onReset(groups, msg),
      tokenize: (msg) => void answerTokenize(tok, model.vocabSize, contextLength, msg).then((out) => toServer.post(out)),
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  ctx.reportStats(() => ({ liveRequests: states.size, scheduler: null, worker: null }))
  ctx.onShutdown(() => {
    inbox.close()
    for (const s of schedulers) s.close()
  })
  toServer.post({
    type: 'ready',
    role: 'tokenizer',
    dpRank: 0,
    tpRank: 0,
    pid: process.pid,
    detail: { vocab: model.vocabSize, chatTemplate: tok.hasChatTemplate, config: config.servedModelName, charsPerToken: Number.isFinite(tok.charsPerToken) ? tok.charsPerToken : null },
  })
})
