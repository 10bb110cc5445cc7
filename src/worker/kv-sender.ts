/**
 * Prefill/decode disaggregation, the prefill instance's side: once a request's prompt is prefilled,
 * its whole KV blocks (src/ipc/kv-blocks.ts transferredTokens) go to the decode instance named by the
 * request's bootstrap (an Outbox per decode instance, tcp, CURVE with --ipc-secret), under its room.
 * A decode instance that is not taking them (not running, not reachable) gets no more than
 * MAX_QUEUED transfers held for it; past that they are dropped, and the decode instance, whose wait
 * times out, prefills those prompts itself.
 */
import { Outbox } from '../ipc/channel.ts'
import { KV_BLOCK_TOKENS, tcpAddress } from '../ipc/kv-blocks.ts'
import type { PrefillEntry } from '../ipc/messages.ts'
import type { Logger } from '../logging.ts'
import * as tracing from '../tracing/index.ts'
import type { StepRunner } from './step-runner.ts'

/** Transfers held for one decode instance that has not taken them yet. */
const MAX_QUEUED = 8

export class KvSender {
  private readonly outboxes = new Map<string, Outbox>()

  constructor(
    private readonly runner: StepRunner,
    private readonly log: Logger,
  ) {}

  /** After `entry` (a last chunk carrying `transfer`) ran: its prompt's KV to the decode instance. */
  send(entry: PrefillEntry): void {
    const target = entry.transfer!
    const rid = entry.rid
    tracing.sliceStart(rid, tracing.SLICES.prefillBootstrap)
    const address = tcpAddress(target.host, target.port)
    let outbox = this.outboxes.get(address)
    if (outbox === undefined) {
      outbox = new Outbox(address)
      this.outboxes.set(address, outbox)
    }
    tracing.sliceEnd(rid, tracing.SLICE.prefillBootstrap)
    tracing.sliceStart(rid, tracing.SLICES.prefillTransferKvCache)
    const blocks = target.tokens.length / KV_BLOCK_TOKENS
    const data = this.runner.exportBlocks(rid, blocks)
    let outcome = 'sent'
    if (data === null) outcome = 'missing'
    else if (outbox.queued >= MAX_QUEUED) outcome = 'dropped'
    else {
      // Its trace context names this slice: the decode side's decode_transferred links to it.
      outbox.post({
        type: 'kv_transfer',
        room: target.room,
        trace: tracing.getPropagateContext(rid),
        tokens: target.tokens,
        numLayers: this.runner.shape.numLayers,
        numKvHeads: this.runner.shape.numKvHeads,
        headDim: this.runner.shape.headDim,
        data,
        cachedTokens: target.cachedTokens,
      })
    }
    if (outcome !== 'sent') this.log.warn({ rid, room: target.room, decode: address, outcome, queued: outbox.queued }, 'KV transfer not sent: the decode instance will prefill the prompt itself')
    tracing.sliceEnd(rid, tracing.SLICE.prefillTransferKvCache, {
      attributes: { [tracing.SPANSERVE_KV_TRANSFER_BLOCKS]: blocks, [tracing.SPANSERVE_KV_TRANSFER_BYTES]: data?.byteLength ?? 0, [tracing.SPANSERVE_KV_TRANSFER_OUTCOME]: outcome },
    })
  }

  close(): void {
    for (const o of this.outboxes.values()) o.close()
    this.outboxes.clear()
  }
}
