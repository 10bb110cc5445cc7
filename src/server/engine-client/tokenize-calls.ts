/**
 * Calls that the tokenizer process answers at once, without generating (vLLM's /tokenize and
 * /detokenize): each waits for its tokenize_out, or its req_error, by rid.
 */
import type { Outbox } from '../../ipc/channel.ts'
import type { ReqError, TokenizeOutput, TokenizeReq } from '../../ipc/messages.ts'
import { SpanserveError } from '../../errors.ts'

interface Pending {
  resolve: (out: TokenizeOutput) => void
  reject: (err: SpanserveError) => void
}

export class TokenizeCalls {
  private readonly pending = new Map<string, Pending>()

  constructor(
    private readonly toTokenizer: Outbox,
    private readonly isUp: () => boolean,
  ) {}

  call(req: TokenizeReq): Promise<TokenizeOutput> {
    if (!this.isUp()) return Promise.reject(new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'the tokenizer is not ready: a process is starting or restarting'))
    return new Promise((resolve, reject) => {
      this.pending.set(req.rid, { resolve, reject })
      this.toTokenizer.post(req)
    })
  }

  onOutput(msg: TokenizeOutput): void {
    const p = this.pending.get(msg.rid)
    if (!p) return
    this.pending.delete(msg.rid)
    p.resolve(msg)
  }

  /** True when the error answers one of these calls. */
  onError(msg: ReqError): boolean {
    const p = this.pending.get(msg.rid)
    if (!p) return false
    this.pending.delete(msg.rid)
    p.reject(new SpanserveError(msg.code, msg.message, msg.param))
    return true
  }

  /** The tokenizer died or the server stops: the calls waiting fail (they are cheap to retry). */
  failAll(err: SpanserveError): void {
    const all = [...this.pending.values()]
    this.pending.clear()
    for (const p of all) p.reject(err)
  }
}
