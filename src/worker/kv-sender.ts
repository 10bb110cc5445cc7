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
    // Named before it starts: the tracing runs in another thread, and the decode side links to this slice.
    const parent = entry.trace === null ? null : tracing.parseTraceparent(entry.trace.traceparent)
    const spanId = parent === null ? undefined : tracing.newSpanId()
    tracing.sliceStart(rid, tracing.SLICES.prefillTransferKvCache, { spanId })
    const blocks = target.tokens.length / KV_BLOCK_TOKENS
    const data = this.runner.exportBlocks(rid, blocks)
    const outcome = data === null ? 'missing' : outbox.queued >= MAX_QUEUED ? 'dropped' : 'sent'
    tracing.sliceEnd(rid, tracing.SLICE.prefillTransferKvCache, {
      attributes: { [tracing.SPANSERVE_KV_TRANSFER_BLOCKS]: blocks, [tracing.SPANSERVE_KV_TRANSFER_BYTES]: data?.byteLength ?? 0, [tracing.SPANSERVE_KV_TRANSFER_OUTCOME]: outcome },
    })
    if (data === null || outcome !== 'sent') {
      this.log.warn({ rid, room: target.room, decode: address, outcome, queued: outbox.queued }, 'KV transfer not sent: the decode instance will prefill the prompt itself')
      return
    }
    const { numLayers, numKvHeads, headDim } = this.runner.shape
    const trace = parent === null ? null : { traceparent: entry.trace!.traceparent, prev: `00-${parent.traceId}-${spanId}-01` }
    outbox.post({ type: 'kv_transfer', room: target.room, trace, tokens: target.tokens, numLayers, numKvHeads, headDim, data, cachedTokens: target.cachedTokens })
  }

  close(): void {
    for (const o of this.outboxes.values()) o.close()
    this.outboxes.clear()
  }
}
