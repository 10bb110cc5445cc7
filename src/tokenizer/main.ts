/**
 * Tokenizer process: tokenizes requests (and renders chat templates), checks them against the
 * model, dispatches each to a data-parallel scheduler, and turns the token ids coming back into
 * text, batch by batch.
 */
import { runChild } from '../process/child.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import type { BatchTokenIdOutput, GenerateReqInput, ReqError, StrOutput } from '../ipc/messages.ts'
import { SpanserveError } from '../errors.ts'
import { TextTokenizer } from './tokenize.ts'
import { IncrementalDetokenizer } from './detokenizer.ts'
import { StopMatcher } from './stop.ts'
import { DpDispatcher } from './dispatch.ts'
import * as tracing from '../tracing/index.ts'
import { traceLogFields } from '../logging.ts'

interface Tracked {
  dp: number
  load: number
  promptTokens: number
  completionTokens: number
  detok: IncrementalDetokenizer
  stop: StopMatcher
}

await runChild('tokenizer', async (ctx) => {
  const { config, model, log, endpoints, contextLength } = ctx
  const tok = new TextTokenizer(model.dir)
  const schedulers = endpoints.schedulers.map((addr) => new Outbox(addr))
  const dispatcher = new DpDispatcher(schedulers.length)
  const live = new Map<string, Tracked>()

  const toServerError = (req: GenerateReqInput, err: unknown): ReqError => {
    const rid = req.rid
    if (err instanceof SpanserveError) return { type: 'req_error', rid, code: err.code, message: err.message, param: err.param }
    log.error({ err, rid, ...traceLogFields(req.trace) }, 'tokenization failed')
    return { type: 'req_error', rid, code: 'SPANSERVE_ERR_INTERNAL', message: 'tokenization failed', param: null }
  }

  const promptIds = (req: GenerateReqInput): number[] => {
    if (req.messages !== null) return tok.encode(tok.applyChatTemplate(req.messages, req.tools ?? null), false)
    if (req.inputIds !== null) {
      for (const id of req.inputIds) {
        if (!Number.isInteger(id) || id < 0 || id >= model.vocabSize) {
          throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', `token id ${id} is outside the vocabulary (0..${model.vocabSize - 1})`, 'prompt')
        }
      }
      return req.inputIds
    }
    return tok.encode(req.text ?? '')
  }

  const generate = (req: GenerateReqInput): void => {
    let ids: number[]
    tracing.reqStart(req.rid, req.trace)
    tracing.sliceStart(req.rid, tracing.SLICE.tokenize, { level: 1 })
    try {
      ids = promptIds(req)
      if (ids.length === 0) {
        if (tok.bosTokenId === null) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'the prompt is empty', 'prompt')
        ids = [tok.bosTokenId]
      }
      // max_tokens < 0 means "the rest of the context" (chat's default).
      const maxTokens = req.maxTokens < 0 ? contextLength - ids.length : req.maxTokens
      if (ids.length + Math.max(maxTokens, 1) > contextLength) {
        throw new SpanserveError(
          'SPANSERVE_ERR_CONTEXT_LENGTH',
          `This model's maximum context length is ${contextLength} tokens. However, you requested ${ids.length + Math.max(maxTokens, 0)} tokens (${ids.length} in the prompt, ${Math.max(maxTokens, 0)} for the completion). Please reduce the prompt or max_tokens.`,
          req.messages !== null ? 'messages' : 'prompt',
        )
      }
      tracing.sliceEnd(req.rid, tracing.SLICE.tokenize, { attributes: { [tracing.GEN_AI_USAGE_INPUT_TOKENS]: ids.length } })
      tracing.sliceStart(req.rid, tracing.SLICE.dpcDispatch, { level: 2 })
      const load = ids.length + maxTokens
      const dp = dispatcher.pick(load)
      if (dp < 0) throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'no data-parallel group is serving right now; retry shortly')
      tracing.sliceAttrs(req.rid, { [tracing.SPANSERVE_DP_RANK]: dp })
      // A resumed request goes on from its prompt plus the tokens it had generated before a crash.
      const resumed = req.resumeIds ?? []
      const detok = new IncrementalDetokenizer(tok)
      const stop = new StopMatcher(req.stop)
      // Replaying them puts the detokenizer's offsets and the held-back text where they were, and
      // discards the text: the client already has it.
      for (const id of resumed) stop.push(detok.push(id))
      live.set(req.rid, { dp, load, promptTokens: ids.length, completionTokens: resumed.length, detok, stop })
      schedulers[dp]!.post({
        type: 'tokenized',
        rid: req.rid,
        trace: tracing.getPropagateContext(req.rid) ?? req.trace,
        inputIds: Int32Array.from(resumed.length > 0 ? [...ids, ...resumed] : ids),
        sampling: resumed.length > 0 ? { ...req.sampling, draws: resumed.length } : req.sampling,
        maxTokens: maxTokens - resumed.length,
        ignoreEos: req.ignoreEos,
        arrivalMs: req.arrivalMs,
      })
      tracing.sliceEnd(req.rid, tracing.SLICE.dpcDispatch)
    } catch (err) {
      const out = toServerError(req, err)
      tracing.reqFinish(req.rid, { error: `${out.code}: ${out.message}` })
      ctx.toServer.post(out)
    }
  }

  const forget = (rid: string): Tracked | undefined => {
    const t = live.get(rid)
    if (t) {
      live.delete(rid)
      dispatcher.done(t.dp, t.load)
    }
    return t
  }

  const repeatsRids = config.numContinuousDecodeSteps > 1
  const onTokens = (batch: BatchTokenIdOutput): void => {
    const t0 = tracing.nowNs()
    const items: StrOutput[] = []
    const ended: string[] = []
    for (let i = 0; i < batch.rids.length; i++) {
      const rid = batch.rids[i]!
      const t = live.get(rid)
      if (!t) continue // aborted by the server meanwhile
      let finishReason = batch.finished[i]!
      t.completionTokens++
      let { text, stopped } = t.stop.push(t.detok.push(batch.tokens[i]!))
      if (stopped) {
        finishReason = 'stop'
        // The scheduler is still decoding it: stop it and free its KV.
        schedulers[t.dp]!.post({ type: 'abort', rid, reason: 'stop string' })
      } else if (finishReason !== null) {
        text += t.stop.flush()
      }
      items.push({ rid, text, tokenId: batch.tokens[i]!, finishReason, promptTokens: t.promptTokens, completionTokens: t.completionTokens, stats: batch.stats[i] ?? null })
      if (finishReason !== null) {
        forget(rid)
        ended.push(rid)
      }
    }
    if (items.length > 0) ctx.toServer.post({ type: 'batch_str', items })
    // One detokenize slice per request per batch at level 3; the request's end closes its thread. A rid
    // repeats within a batch only after continuous decode steps, and only a recorded slice needs it once.
    const sliced = repeatsRids && tracing.isTracingEnabled() && tracing.getLevel() === 3 ? [...new Set(batch.rids)] : batch.rids
    tracing.batchSlice(sliced, tracing.SLICE.detokenize, t0, tracing.nowNs(), undefined, 3)
    for (const rid of ended) tracing.reqFinish(rid)
  }

  const inbox = new Inbox(
    endpoints.tokenizer,
    {
      ...ctx.commonHandlers,
      generate,
      abort: (msg) => {
        const t = forget(msg.rid)
        if (t) schedulers[t.dp]!.post(msg)
        tracing.reqAbort(msg.rid, msg.reason)
      },
      batch_token_ids: onTokens,
      req_error: (msg) => {
        forget(msg.rid)
        tracing.reqFinish(msg.rid, { error: `${msg.code}: ${msg.message}` })
        ctx.toServer.post(msg)
      },
      group_state: (msg) => {
        if (msg.up) {
          dispatcher.enable(msg.dpRank)
          return
        }
        dispatcher.disable(msg.dpRank)
        schedulers[msg.dpRank]!.discard()
        let failed = 0
        for (const [rid, t] of live) {
          if (t.dp !== msg.dpRank) continue
          forget(rid)
          tracing.reqFinish(rid, { error: msg.reason })
          ctx.toServer.post({ type: 'req_error', rid, code: 'SPANSERVE_ERR_UNAVAILABLE', message: `data-parallel group ${msg.dpRank} failed (${msg.reason}); the request can be retried`, param: null, lost: msg.process ?? `scheduler-${msg.dpRank}` })
          failed++
        }
        log.warn({ dp_rank: msg.dpRank, reason: msg.reason, failed }, 'data-parallel group out of dispatch')
      },
      reset: (msg) => {
        log.warn({ reason: msg.reason }, 'dropping all request state')
        for (const rid of live.keys()) tracing.reqFinish(rid, { error: msg.reason })
        live.clear()
        dispatcher.reset()
      },
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  ctx.reportStats(() => ({ liveRequests: live.size, scheduler: null, worker: null }))
  ctx.onShutdown(() => {
    inbox.close()
    for (const s of schedulers) s.close()
  })
  ctx.toServer.post({ type: 'ready', role: 'tokenizer', dpRank: 0, tpRank: 0, pid: process.pid, detail: { vocab: model.vocabSize, chatTemplate: tok.hasChatTemplate, config: config.servedModelName } })
})
