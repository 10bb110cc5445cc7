/**
 * A scripted EngineClient, for testing the HTTP layer through Fastify's inject() without processes.
 *
 * It records every GenerateReqInput, TokenizeReq and abort the routes hand it, and answers each
 * generation with what the test scripts: StrOutput items (text deltas, token ids, logprobs, finish
 * reasons) and typed errors (ReqError, turned into a SpanserveError as PipelineEngineClient does),
 * delivered one at a time, each on its own turn of the event loop, pausing at gates the test opens.
 * A request with n > 1 reaches the engine as one GenerateReqInput per sequence (as in the real
 * pipeline); the script is told which call it answers.
 *
 * Everything that crosses it goes through the IPC codec (encode, then decode, which checks the
 * message schemas of src/ipc/message-schemas.ts): a request the tokenizer would refuse, or an answer
 * the pipeline could never send, fails the test (a 500 for the client, and `violations`) instead of
 * passing against a contract that has drifted.
 */
import { decode, encode } from '../../src/ipc/codec.ts'
import type { BatchStrOutput, FinishReason, GenerateReqInput, Message, ReqError, StrOutput, TextLogprobs, TokenizeOutput, TokenizeReq } from '../../src/ipc/messages.ts'
import { SpanserveError, isErrorCode, type ErrorCode } from '../../src/errors.ts'
import type { EngineClient, RequestSink } from '../../src/server/engine-client/engine-client.ts'

/** One output of a generation: its text delta, and any StrOutput field the test sets beyond the defaults. */
export type OutputStep = { text: string } & Partial<Omit<StrOutput, 'rid' | 'text'>>

/** A typed error from the pipeline, as a ReqError carries it: the request ends with it. */
export type ErrorStep = { code: ErrorCode | string } & Partial<Pick<ReqError, 'message' | 'param'>>

/** A point where the script waits until the test opens it. */
export class Gate {
  private release!: () => void
  readonly opened = new Promise<void>((resolve) => (this.release = resolve))
  open(): void {
    this.release()
  }
}

export type Step = OutputStep | ErrorStep | Gate

/**
 * A generation's answer. `call` counts the engine's submits from 0: a request of n sequences is n
 * calls in a row. Throwing a SpanserveError refuses the submit itself (the engine is not serving).
 * A script that ends without a finish reason leaves the request running until it is aborted.
 */
export type Script = (req: GenerateReqInput, call: number) => Step[]

/** The answer to a TokenizeReq: its tokens, token strings and text. Throwing a SpanserveError fails it. */
export type TokenizeScript = (req: TokenizeReq) => Pick<TokenizeOutput, 'tokens'> & Partial<Pick<TokenizeOutput, 'tokenStrs' | 'text'>>

/** Outputs of one token each; the last carries the finish reason. */
export function tokens(texts: readonly string[], finishReason: FinishReason = 'stop', each: Partial<OutputStep> = {}): OutputStep[] {
  return texts.map((text, i) => ({ ...each, text, finishReason: i === texts.length - 1 ? finishReason : null }))
}

/** The pipeline fails the request with this code (a ReqError). */
export function fail(code: ErrorCode, message = 'scripted failure', param: string | null = null): ErrorStep {
  return { code, message, param }
}

/** A token's logprobs as the tokenizer sends them: the sampled token's, and the top tokens' best first. */
export function logprobs(token: string, logprob: number, top: readonly [string, number][] = []): TextLogprobs {
  return { token, logprob, top: top.map(([t]) => t), topLogprobs: Float32Array.from(top.map(([, l]) => l)) }
}

/** Through the wire and back: what the receiving process would see, or the decoder's refusal. */
function overTheWire<M extends Message>(msg: M): M {
  return decode(encode(msg)) as M
}

function isGate(step: Step): step is Gate {
  return step instanceof Gate
}

function isError(step: Step): step is ErrorStep {
  return !isGate(step) && 'code' in step
}

/** A stand-in prompt length: the token ids, else the words of the text or of the messages. */
function promptLength(req: GenerateReqInput): number {
  if (req.inputIds) return req.inputIds.length
  const text = req.text ?? (req.messages ?? []).map((m) => m.content).join(' ')
  return Math.max(1, text.split(/\s+/).filter(Boolean).length)
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

export class ScriptedEngine implements EngineClient {
  /** Every generation submitted, as the tokenizer would decode it. */
  readonly requests: GenerateReqInput[] = []
  /** Every abort, in order. */
  readonly aborts: { rid: string; reason: string }[] = []
  readonly tokenizeCalls: TokenizeReq[] = []
  /** Messages that broke the IPC contract (each also failed its request). */
  readonly violations: string[] = []
  /** The default answer: "ok", finished by stop. */
  script: Script = () => tokens(['ok'])
  tokenizeScript: TokenizeScript = () => {
    throw new Error('ScriptedEngine: no tokenizeScript set')
  }
  private readonly running = new Set<string>()
  private readonly waiters: { ready: () => boolean; resolve: () => void }[] = []

  constructor(script?: Script) {
    if (script) this.script = script
  }

  /** Requests submitted and neither finished, failed nor aborted. */
  get live(): number {
    return this.running.size
  }

  /** Resolves once `ready` holds (checked after every submit, output, error and abort); rejects after `timeoutMs`. */
  until(ready: () => boolean, timeoutMs = 5000): Promise<void> {
    if (ready()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      // A test waiting for what never comes fails here, not at tap's file timeout.
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1)
        reject(new Error(`ScriptedEngine.until: not within ${timeoutMs} ms (${this.requests.length} requests, ${this.aborts.length} aborts, ${this.live} live)`))
      }, timeoutMs)
      const waiter = { ready, resolve: () => (clearTimeout(timer), resolve()) }
      this.waiters.push(waiter)
    })
  }

  submit(req: GenerateReqInput, sink: RequestSink): void {
    const received = this.check(req)
    const call = this.requests.length
    this.requests.push(received)
    // A script that throws refuses the submit, as the real engine does when it cannot serve.
    const steps = this.script(received, call)
    this.running.add(req.rid)
    this.changed()
    void this.deliver(received, steps, sink)
  }

  abort(rid: string, reason: string): void {
    const msg = this.check({ type: 'abort', rid, reason })
    this.aborts.push({ rid: msg.rid, reason: msg.reason })
    this.running.delete(rid)
    this.changed()
  }

  async tokenize(req: TokenizeReq): Promise<TokenizeOutput> {
    const received = this.check(req)
    this.tokenizeCalls.push(received)
    await nextTurn()
    const answer = this.tokenizeScript(received)
    return this.check({ type: 'tokenize_out', rid: req.rid, tokens: answer.tokens, tokenStrs: answer.tokenStrs ?? null, text: answer.text ?? null })
  }

  /** The message as the receiving process would decode it; a violation is recorded and thrown as a 500. */
  private check<M extends Message>(msg: M): M {
    try {
      return overTheWire(msg)
    } catch (err) {
      const why = `${msg.type}: ${(err as Error).message}`
      this.violations.push(why)
      throw new SpanserveError('SPANSERVE_ERR_INTERNAL', `scripted engine: the message breaks the IPC contract (${why})`)
    }
  }

  private async deliver(req: GenerateReqInput, steps: readonly Step[], sink: RequestSink): Promise<void> {
    const { rid } = req
    const promptTokens = promptLength(req)
    let completionTokens = 0
    let tokenId = 100
    for (const step of steps) {
      await nextTurn()
      if (isGate(step)) await step.opened
      if (!this.running.has(rid)) return
      if (isGate(step)) continue
      if (isError(step)) {
        this.end(rid)
        let msg: ReqError
        try {
          msg = this.check({ type: 'req_error', rid, code: step.code as ErrorCode, message: step.message ?? 'scripted failure', param: step.param ?? null })
        } catch (err) {
          sink.onError(err as SpanserveError)
          return
        }
        // As PipelineEngineClient.onError: a code the server does not know is an internal error.
        sink.onError(new SpanserveError(isErrorCode(msg.code) ? msg.code : 'SPANSERVE_ERR_INTERNAL', msg.message, msg.param))
        return
      }
      completionTokens++
      const finishReason = step.finishReason ?? null
      const item: StrOutput = {
        rid,
        tokenId: tokenId++,
        promptTokens,
        completionTokens,
        // The scheduler's timings come with the finish.
        stats: finishReason === null ? null : { queueMs: 1, prefillMs: 2, decodeMs: 3 },
        ...step,
        finishReason,
      }
      let received: StrOutput
      try {
        received = this.check<BatchStrOutput>({ type: 'batch_str', items: [item] }).items[0]!
      } catch (err) {
        this.end(rid)
        sink.onError(err as SpanserveError)
        return
      }
      if (finishReason !== null) this.end(rid)
      sink.onOutput(received)
      this.changed()
      if (finishReason !== null) return
    }
  }

  private end(rid: string): void {
    this.running.delete(rid)
    this.changed()
  }

  private changed(): void {
    for (const w of [...this.waiters]) {
      if (!w.ready()) continue
      this.waiters.splice(this.waiters.indexOf(w), 1)
      w.resolve()
    }
  }
}
