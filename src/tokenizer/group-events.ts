/**
 * What the tokenizer does when a data-parallel group goes down or up, or the whole pipeline is
 * reset: a group that fails is taken out of dispatch, and each of its requests is answered with a
 * retryable error that names the process it was lost with (the server may resume it).
 */
import type { GroupState, ResetState } from '../ipc/messages.ts'
import type { Outbox } from '../ipc/channel.ts'
import type { Logger } from '../logging.ts'
import * as tracing from '../tracing/index.ts'
import type { DpDispatcher } from './dispatch.ts'
import type { RequestStates } from './request-state.ts'

export interface GroupEventDeps {
  states: RequestStates
  dispatcher: DpDispatcher
  schedulers: Outbox[]
  toServer: Outbox
  log: Logger
}

export function onGroupState(d: GroupEventDeps, msg: GroupState): void {
  if (msg.up) {
    d.dispatcher.enable(msg.dpRank)
    return
  }
  d.dispatcher.disable(msg.dpRank)
  d.schedulers[msg.dpRank]!.discard()
  const failed = d.states.forgetGroup(msg.dpRank)
  for (const rid of failed) {
    tracing.reqFinish(rid, { error: msg.reason })
    d.toServer.post({
      type: 'req_error',
      rid,
      code: 'SPANSERVE_ERR_UNAVAILABLE',
      message: `data-parallel group ${msg.dpRank} failed (${msg.reason}); the request can be retried`,
      param: null,
      lost: msg.process ?? `scheduler-${msg.dpRank}`,
    })
  }
  d.log.warn({ dp_rank: msg.dpRank, reason: msg.reason, failed: failed.length }, 'data-parallel group out of dispatch')
}

export function onReset(d: GroupEventDeps, msg: ResetState): void {
  d.log.warn({ reason: msg.reason }, 'dropping all request state')
  for (const rid of d.states.clear()) tracing.reqFinish(rid, { error: msg.reason })
}
