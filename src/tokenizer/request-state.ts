/**
 * The tokenizer's live requests, by rid (SGLang's rid_to_state): for each, the data-parallel group
 * it went to and the load it counts there, and what turns its token ids into the text the client
 * gets (incremental detokenizer, stop strings, stop token ids) with its usage so far.
 */
import type { FinishReason, TextLogprobs, TokenLogprobs } from '../ipc/messages.ts'
import { textLogprobs } from './logprobs-text.ts'
import { IncrementalDetokenizer, type Decoder } from './detokenizer.ts'
import type { DpDispatcher } from './dispatch.ts'
import { StopMatcher } from './stop.ts'
import type { TextTokenizer } from './tokenize.ts'

export interface NewRequestState {
  rid: string
  dp: number
  /** Prompt + max_tokens, counted against the group until the request ends. */
  load: number
  promptTokens: number
  stop: readonly string[]
  /** vLLM's stop_token_ids: each ends the request; its text is not returned. */
  stopTokenIds: readonly number[] | undefined
  /**
   * vLLM's min_tokens: stop strings are not looked for until more tokens than this came (the
   * worker's sampler already holds EOS and stop_token_ids back until then).
   */
  minTokens?: number
  /** A resumed request's tokens so far: replayed, their text not sent again. */
  resumed: readonly number[]
  /** The prompt's ids, kept only when its logprobs come back (echo). */
  promptIds?: readonly number[]
  /** GenerateReqInput.skipSpecialTokens: false keeps special tokens in the text and in logprobs' tokens. */
  skipSpecialTokens?: boolean
}

/** One generated token's outcome. */
export interface TokenOutcome {
  text: string
  finishReason: FinishReason | null
  /** A stop string or stop token ended it here: the scheduler, still decoding it, must be told. */
  stoppedHere: boolean
}

export class RequestState {
  readonly rid: string
  readonly dp: number
  readonly load: number
  readonly promptTokens: number
  completionTokens: number
  private readonly detok: IncrementalDetokenizer
  private readonly stop: StopMatcher
  private readonly stopTokenIds: ReadonlySet<number> | null
  private readonly minTokens: number
  /** The tokenizer's decode, skipping special tokens or keeping them as the request asked. */
  private decoder: Decoder
  private readonly tok: TextTokenizer
  private readonly promptIds: readonly number[] | null

  constructor(tok: TextTokenizer, s: NewRequestState) {
    this.tok = tok
    this.decoder = s.skipSpecialTokens === false ? tok.keepingSpecialTokens : tok
    this.promptIds = s.promptIds ?? null
    this.rid = s.rid
    this.dp = s.dp
    this.load = s.load
    this.promptTokens = s.promptTokens
    this.completionTokens = 0
    this.minTokens = s.minTokens ?? 0
    this.detok = new IncrementalDetokenizer(this.decoder)
    this.stop = new StopMatcher(s.stop)
    this.stopTokenIds = s.stopTokenIds && s.stopTokenIds.length > 0 ? new Set(s.stopTokenIds) : null
    // Replaying puts the detokenizer's offsets and the held-back text where they were, and discards
    // the text: the client already has it.
    for (const id of s.resumed) this.stop.push(this.detok.push(id), ++this.completionTokens > this.minTokens)
  }

  /** A token's logprobs from the worker, decoded for the client. */
  logprobsText(token: number, lp: TokenLogprobs): TextLogprobs {
    return textLogprobs(this.decoder, token, lp, this.promptIds)
  }

  /** The next generated token; `finishReason` as the scheduler decided it (EOS, max_tokens). */
  push(token: number, finishReason: FinishReason | null): TokenOutcome {
    this.completionTokens++
    // A stop token's own text is not returned; what came before it is, held-back bytes included.
    if (this.stopTokenIds?.has(token)) return { text: this.tail().text, finishReason: 'stop', stoppedHere: finishReason === null }
    // Nor is the EOS token's that ended it (the scheduler's only 'stop'), as in vLLM: it decodes to
    // nothing when special tokens are skipped, and must not show when they are kept.
    if (finishReason === 'stop') {
      const text = this.tail().text
      // Its logprobs entry reads as the text does (no EOS), so that logprobs' tokens still add up to it.
      this.decoder = this.tok
      return { text, finishReason, stoppedHere: false }
    }
    // vLLM looks for stop strings only once more than min_tokens tokens came; one that began in the
    // earlier text and ends in this token's still counts.
    const { text, stopped } = this.stop.push(this.detok.push(token), this.completionTokens > this.minTokens)
    if (stopped) return { text, finishReason: 'stop', stoppedHere: true }
    if (finishReason === null) return { text, finishReason, stoppedHere: false }
    const end = this.tail()
    return { text: text + end.text, finishReason: end.stopped ? 'stop' : finishReason, stoppedHere: false }
  }

  /**
   * The generation ended: the detokenizer's held-back bytes (an incomplete character, U+FFFD as
   * decode renders it) and the stop matcher's held-back text, so the text is the decode of the ids
   * and logprobs' tokens add up to it. The flushed text is still matched against the stop strings:
   * text after a stop string is never returned.
   */
  private tail(): { text: string; stopped: boolean } {
    const r = this.stop.push(this.detok.flush(), this.completionTokens > this.minTokens)
    return r.stopped ? r : { text: r.text + this.stop.flush(), stopped: false }
  }
}

/** The live requests, each counted in the dispatcher's load of its group until it ends. */
export class RequestStates {
  private readonly live = new Map<string, RequestState>()

  constructor(private readonly dispatcher: DpDispatcher) {}

  get size(): number {
    return this.live.size
  }

  get(rid: string): RequestState | undefined {
    return this.live.get(rid)
  }

  add(state: RequestState): void {
    this.live.set(state.rid, state)
  }

  /** The request ended (or was aborted): its load leaves its group. */
  forget(rid: string): RequestState | undefined {
    const t = this.live.get(rid)
    if (t) {
      this.live.delete(rid)
      this.dispatcher.done(t.dp, t.load)
    }
    return t
  }

  /** Forget every request of a group that failed; returns their rids. */
  forgetGroup(dp: number): string[] {
    const rids: string[] = []
    for (const [rid, t] of this.live) {
      if (t.dp !== dp) continue
      this.forget(rid)
      rids.push(rid)
    }
    return rids
  }

  /** Drop everything (the pipeline restarted); returns the rids that were live. */
  clear(): string[] {
    const rids = [...this.live.keys()]
    this.live.clear()
    this.dispatcher.reset()
    return rids
  }
}
