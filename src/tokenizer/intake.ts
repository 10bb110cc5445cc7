/**
 * A new request into the tokenizer: its prompt tokenized (or its chat template rendered), checked
 * against the model and the context length, its sampling made ready for the worker, and dispatched
 * to the data-parallel group with the least load. A refusal goes back to the server as a ReqError.
 */
import type { GenerateReqInput, ReqError } from '../ipc/messages.ts'
import type { Outbox } from '../ipc/channel.ts'
import { SpanserveError } from '../errors.ts'
import { traceLogFields, type Logger } from '../logging.ts'
import type { ModelInfo } from '../model/load.ts'
import { checkTokenIds } from '../sampling/body.ts'
import { forWorker } from '../sampling/for-worker.ts'
import * as tracing from '../tracing/index.ts'
import type { DpDispatcher } from './dispatch.ts'
import { RequestState, type RequestStates } from './request-state.ts'
import type { TextTokenizer } from './tokenize.ts'
import { boundedPromptIds } from './prompt-ids.ts'

export interface IntakeDeps {
  tok: TextTokenizer
  model: ModelInfo
  contextLength: number
  dispatcher: DpDispatcher
  states: RequestStates
  schedulers: Outbox[]
  toServer: Outbox
  log: Logger
}

export class Intake {
  /** Requests still tokenizing (it yields between pieces), and those aborted meanwhile. */
  private readonly tokenizing = new Set<string>()
  private readonly abortedWhileTokenizing = new Set<string>()

  constructor(private readonly d: IntakeDeps) {}

  /** True when the request was still tokenizing: it is dropped once its tokenizing ends. */
  abort(rid: string): boolean {
    if (!this.tokenizing.has(rid)) return false
    this.abortedWhileTokenizing.add(rid)
    return true
  }

  async generate(req: GenerateReqInput): Promise<void> {
    const { tok, contextLength, dispatcher, model } = this.d
    let ids: number[]
    tracing.reqStart(req.rid, req.trace)
    tracing.sliceStart(req.rid, tracing.SLICE.tokenize, { level: 1 })
    try {
      this.tokenizing.add(req.rid)
      try {
        ids = await this.promptIds(req)
      } finally {
        this.tokenizing.delete(req.rid)
      }
      // The server has forgotten it: nothing is dispatched and nothing answered.
      if (this.abortedWhileTokenizing.delete(req.rid)) return
      if (ids.length === 0) {
        if (tok.bosTokenId === null) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', 'the prompt is empty', 'prompt')
        ids = [tok.bosTokenId]
      }
      checkTokenIds(req.sampling, model.vocabSize)
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
      const { dp, match } = dispatcher.pickFor(ids, load)
      if (dp < 0) throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'no data-parallel group is serving right now; retry shortly')
      tracing.sliceAttrs(req.rid, { [tracing.SPANSERVE_DP_RANK]: dp, [tracing.SPANSERVE_DP_PREFIX_MATCH_TOKENS]: match })
      // A resumed request goes on from its prompt plus the tokens it had generated before a crash.
      const resumed = req.resumeIds ?? []
      this.d.states.add(
        new RequestState(tok, {
          rid: req.rid,
          dp,
          load,
          promptTokens: ids.length,
          stop: req.stop,
          stopTokenIds: req.sampling.stopTokenIds,
          minTokens: req.sampling.minTokens,
          resumed,
          promptIds: req.sampling.promptLogprobs !== undefined ? ids : undefined,
          skipSpecialTokens: req.skipSpecialTokens,
        }),
      )
      this.d.schedulers[dp]!.post({
        type: 'tokenized',
        rid: req.rid,
        // The channel puts this process's context for the request on it as it leaves.
        trace: req.trace,
        inputIds: Int32Array.from(resumed.length > 0 ? [...ids, ...resumed] : ids),
        sampling: forWorker(req.sampling, { promptIds: ids, resumedIds: resumed, eosTokenIds: model.eosTokenIds, ignoreEos: req.ignoreEos }),
        maxTokens: maxTokens - resumed.length,
        ignoreEos: req.ignoreEos,
        arrivalMs: req.arrivalMs,
        ...(req.client !== undefined ? { client: req.client } : {}),
        ...(req.bootstrap !== undefined ? { bootstrap: req.bootstrap } : {}),
      })
      tracing.sliceEnd(req.rid, tracing.SLICE.dpcDispatch)
    } catch (err) {
      if (this.abortedWhileTokenizing.delete(req.rid)) return
      const out = this.toServerError(req, err)
      tracing.reqFinish(req.rid, { error: `${out.code}: ${out.message}` })
      this.d.toServer.post(out)
    }
  }

  private async promptIds(req: GenerateReqInput): Promise<number[]> {
    const { tok, model, contextLength } = this.d
    // max_tokens < 0 (the rest of the context) still needs one token to generate.
    const completion = Math.max(req.maxTokens, 1)
    // A chat prompt is bounded as rendered: the template adds its own text around the messages.
    if (req.messages !== null) return boundedPromptIds(tok, tok.applyChatTemplate(req.messages, req.tools ?? null), false, { context: contextLength, completion, param: 'messages' })
    if (req.inputIds !== null) {
      for (const id of req.inputIds) {
        if (!Number.isInteger(id) || id < 0 || id >= model.vocabSize) {
          throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', `token id ${id} is outside the vocabulary (0..${model.vocabSize - 1})`, 'prompt')
        }
      }
      return req.inputIds
    }
    return boundedPromptIds(tok, req.text ?? '', true, { context: contextLength, completion, param: 'prompt' })
  }

  private toServerError(req: GenerateReqInput, err: unknown): ReqError {
    const rid = req.rid
    if (err instanceof SpanserveError) return { type: 'req_error', rid, code: err.code, message: err.message, param: err.param }
    this.d.log.error({ err, rid, ...traceLogFields(req.trace) }, 'tokenization failed')
    return { type: 'req_error', rid, code: 'SPANSERVE_ERR_INTERNAL', message: 'tokenization failed', param: null }
  }
}
