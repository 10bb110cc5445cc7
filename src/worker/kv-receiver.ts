/**
 * Prefill/decode disaggregation, the decode instance's side: the worker binds a tcp socket (the
 * bootstrap port; CURVE with --ipc-secret) where prefill instances send prompts' KV by bootstrap
 * room. The scheduler says which room each waiting request expects (kv_expect) and where its blocks
 * are; the transfer, whichever comes first, is checked against the request (the same prompt tokens,
 * the same KV layout), written into its blocks, and answered with kv_arrived. A transfer that comes
 * before its request is held for a while (its request may still be in the queue), within a bound.
 *
 * Every write goes through the step loop's order (`serialize`): a block given to a waiting request
 * may have been freed by a step the worker has received but not run yet, which must run first.
 */
import { Inbox, type Outbox } from '../ipc/channel.ts'
import { blocksFor, KV_BLOCK_TOKENS } from '../ipc/kv-blocks.ts'
import type { KvExpect, KvTransfer } from '../ipc/messages.ts'
import type { Logger } from '../logging.ts'
import * as tracing from '../tracing/index.ts'
import type { StepRunner } from './step-runner.ts'

export interface KvReceiverOptions {
  runner: StepRunner
  toScheduler: Outbox
  log: Logger
  /** Runs a task after every step received before it (StepLoop.after). */
  serialize: (task: () => void) => void
  /** How long a transfer that came before its request is held (the decode side's wait). */
  holdMs: number
  /** The model's context: no transfer is larger than its whole KV (a larger one drops its sender). */
  contextLength: number
}

/** Most transfers held for requests not yet seen, and their bytes; past either the oldest goes first. */
const MAX_HELD = 64
const MAX_HELD_BYTES = 256 * 2 ** 20
/** Room for a transfer's header beside its KV data and token ids. */
const HEADER_BYTES = 2 ** 16

interface Held {
  msg: KvTransfer
  at: number
}

export class KvReceiver {
  private readonly inbox: Inbox
  private readonly expected = new Map<number, KvExpect>()
  private readonly roomOf = new Map<string, number>()
  private readonly held = new Map<number, Held>()

  constructor(
    address: string,
    private readonly opts: KvReceiverOptions,
  ) {
    // The largest transfer taken: a whole context's blocks of KV (4-byte floats), its token ids, a header.
    const maxTransferBytes = blocksFor(opts.contextLength) * opts.runner.blockFloats * 4 + opts.contextLength * 4 + HEADER_BYTES
    this.inbox = new Inbox(address, { kv_transfer: (msg) => opts.serialize(() => this.arrived(msg)) }, (err) => opts.log.warn({ err }, 'bad KV transfer'), undefined, maxTransferBytes)
  }

  /** Binds the bootstrap port; returns the address bound. */
  async bind(): Promise<string> {
    await this.inbox.bind()
    return this.inbox.boundAddress ?? ''
  }

  expect(msg: KvExpect): void {
    this.opts.serialize(() => {
      tracing.reqStart(msg.rid, msg.trace)
      tracing.sliceStart(msg.rid, tracing.SLICES.decodeBootstrap)
      this.expected.set(msg.room, msg)
      this.roomOf.set(msg.rid, msg.room)
      const early = this.held.get(msg.room)
      tracing.sliceEnd(msg.rid, tracing.SLICE.decodeBootstrap)
      if (early !== undefined) {
        this.held.delete(msg.room)
        this.take(msg, early.msg)
      }
    })
  }

  cancel(rid: string): void {
    this.opts.serialize(() => this.forget(rid))
  }

  /** A peer process died: nothing is expected any more. */
  reset(): void {
    this.opts.serialize(() => {
      this.expected.clear()
      this.roomOf.clear()
    })
  }

  close(): void {
    this.inbox.close()
  }

  private forget(rid: string): void {
    const room = this.roomOf.get(rid)
    if (room === undefined) return
    this.roomOf.delete(rid)
    this.expected.delete(room)
  }

  private arrived(msg: KvTransfer): void {
    const exp = this.expected.get(msg.room)
    if (exp !== undefined) {
      this.take(exp, msg)
      return
    }
    // Its request has not reached this worker yet: hold it, within the bounds.
    const now = performance.now()
    let bytes = msg.data.byteLength
    for (const h of this.held.values()) bytes += h.msg.data.byteLength
    // Oldest first (a Map keeps insertion order): out of time, or making room by count and bytes.
    for (const [room, h] of this.held) {
      if (now - h.at <= this.opts.holdMs && this.held.size < MAX_HELD && bytes <= MAX_HELD_BYTES) break
      this.held.delete(room)
      bytes -= h.msg.data.byteLength
    }
    this.held.set(msg.room, { msg, at: now })
  }

  private take(exp: KvExpect, msg: KvTransfer): void {
    this.forget(exp.rid)
    const refusal = this.check(exp, msg)
    if (refusal !== null) {
      this.opts.log.warn({ rid: exp.rid, room: exp.room, reason: refusal }, 'KV transfer refused: the request prefills here')
      this.opts.toScheduler.post({ type: 'kv_arrived', rid: exp.rid, ok: false, reason: refusal, cachedTokens: 0 })
      return
    }
    // Under the prefill side's prefill_transfer_kv_cache (same trace: the bootstrap room's), linked to it.
    tracing.setPropagateContext(exp.rid, msg.trace)
    tracing.sliceStart(exp.rid, tracing.SLICES.decodeTransferred)
    const blocks = msg.tokens.length / KV_BLOCK_TOKENS
    this.opts.runner.importBlocks(exp.blocks.subarray(0, blocks), msg.data, exp.from)
    tracing.sliceEnd(exp.rid, tracing.SLICE.decodeTransferred, { attributes: { [tracing.SPANSERVE_KV_TRANSFER_BLOCKS]: blocks - exp.from } })
    this.opts.toScheduler.post({ type: 'kv_arrived', rid: exp.rid, ok: true, reason: null, cachedTokens: msg.cachedTokens })
  }

  /** Why the transfer cannot stand for this request's prefill, or null. */
  private check(exp: KvExpect, msg: KvTransfer): string | null {
    const { shape, blockFloats } = this.opts.runner
    if (msg.numLayers !== shape.numLayers || msg.numKvHeads !== shape.numKvHeads || msg.headDim !== shape.headDim) {
      return `the KV layout differs (prefill: ${msg.numLayers} layers × ${msg.numKvHeads} heads × ${msg.headDim}; here ${shape.numLayers} × ${shape.numKvHeads} × ${shape.headDim}): not the same model`
    }
    if (msg.tokens.length !== exp.tokens.length) return `the prompt differs in length (${msg.tokens.length} tokens sent, ${exp.tokens.length} expected)`
    const blocks = exp.tokens.length / KV_BLOCK_TOKENS
    if (!Number.isInteger(blocks) || blocks > exp.blocks.length || msg.data.length !== blocks * blockFloats) return 'the KV data is not whole blocks of this request'
    for (let i = 0; i < exp.tokens.length; i++) if (msg.tokens[i] !== exp.tokens[i]) return `the prompt differs at token ${i} (a different tokenizer or chat template)`
    return null
  }
}
