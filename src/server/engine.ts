/**
 * The server's side of the pipeline: hands requests to the tokenizer process and routes what comes
 * back (text deltas, typed errors) to the HTTP request that waits for it.
 */
import type { Outbox } from '../ipc/channel.ts'
import type { BatchStrOutput, GenerateReqInput, ReqError, StrOutput } from '../ipc/messages.ts'
import { SpanserveError, isErrorCode } from '../errors.ts'

export interface RequestSink {
  onOutput(item: StrOutput): void
  onError(err: SpanserveError): void
}

export class Engine {
  private readonly inflight = new Map<string, RequestSink>()

  constructor(
    private readonly toTokenizer: Outbox,
    private readonly isReady: () => boolean,
  ) {}

  get size(): number {
    return this.inflight.size
  }

  /** Throws SPANSERVE_ERR_UNAVAILABLE while a process is down or starting. */
  submit(req: GenerateReqInput, sink: RequestSink): void {
    if (!this.isReady()) throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'the server is not ready: a process is starting or restarting')
    this.inflight.set(req.rid, sink)
    this.toTokenizer.post(req)
  }

  /** The client went away: stop the request everywhere and free its KV. */
  abort(rid: string, reason: string): void {
    if (!this.inflight.delete(rid)) return
    this.toTokenizer.post({ type: 'abort', rid, reason })
  }

  onBatch(batch: BatchStrOutput): void {
    for (const item of batch.items) {
      const sink = this.inflight.get(item.rid)
      if (!sink) continue
      if (item.finishReason !== null) this.inflight.delete(item.rid)
      sink.onOutput(item)
    }
  }

  onError(msg: ReqError): void {
    const sink = this.inflight.get(msg.rid)
    if (!sink) return
    this.inflight.delete(msg.rid)
    const code = isErrorCode(msg.code) ? msg.code : 'SPANSERVE_ERR_INTERNAL'
    sink.onError(new SpanserveError(code, msg.message, msg.param))
  }

  /** A process died or the server stops: every request in flight fails with `err`. */
  failAll(err: SpanserveError): void {
    const sinks = [...this.inflight.values()]
    this.inflight.clear()
    for (const sink of sinks) sink.onError(err)
  }
}
