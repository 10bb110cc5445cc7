/**
 * What a generation request asks beyond one plain completion: n choices per prompt (best_of of them
 * generated), logprobs, completions' echo. Applied to each sequence's request once it is built.
 */
import { SpanserveError } from '../../../errors.ts'
import * as tracing from '../../../tracing/index.ts'
import type { ServingInfo } from '../serving-info.ts'
import { LogprobsFormatter, type LogprobsKind } from './logprobs.ts'
import { checkKvShare } from './kv-share.ts'
import type { BuiltRequest, GenerateInput } from './request.ts'
import type { GenerationRun } from './run.ts'

export interface GenerationOptions {
  /** Choices returned per prompt (default 1). */
  n?: number
  /** Sequences generated per prompt, the n most likely returned (default n). */
  bestOf?: number
  /** The logprobs shape and how many alternatives per token, when asked. */
  logprobs?: { kind: LogprobsKind; top: number } | null
  /** Completions' echo: the prompt comes back before the completion (with its tokens' logprobs when asked). */
  echo?: boolean
  /**
   * max_tokens 0 with echo: the prompt (and its logprobs) alone. The request runs as 1 token, whose
   * text, logprobs and count are dropped, and finishes with "length".
   */
  echoOnly?: boolean
}

/** Sequences generated per prompt. */
export function sequencesPerPrompt(o: GenerationOptions): number {
  return Math.max(o.n ?? 1, o.bestOf ?? 1)
}

/** Refuses what cannot be served: best_of below n, best_of streamed, more KV than one request may hold. */
export function checkOptions(o: GenerationOptions, inputs: readonly GenerateInput[], stream: boolean, info: ServingInfo): void {
  const prompts = inputs.length
  const n = o.n ?? 1
  if (o.bestOf !== undefined && o.bestOf < n) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `best_of (${o.bestOf}) must be greater than or equal to n (${n})`, 'best_of')
  if (o.bestOf !== undefined && o.bestOf > n && stream) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', 'best_of greater than n cannot be streamed', 'best_of')
  const per = sequencesPerPrompt(o)
  if (prompts > 1 && per * prompts > 1024) throw new SpanserveError('SPANSERVE_ERR_VALIDATION', `${prompts} prompts × ${per} choices is more than 1024 sequences`, 'prompt')
  checkKvShare(inputs, per, o.bestOf !== undefined && o.bestOf > n ? 'best_of' : 'n', info)
}

/**
 * Ready one sequence's run: choice `seq` of its prompt draws from seed + seq (vLLM's), logprobs and
 * prompt logprobs are asked of the worker only when needed, and its span says which choice it is.
 */
export function prepareSequence(run: GenerationRun, built: BuiltRequest, o: GenerationOptions, seq: number, index: number, total: number): void {
  const sampling = built.req.sampling
  if (sampling.seed !== null && seq > 0) sampling.seed = (sampling.seed + seq) >>> 0
  const ranked = (o.bestOf ?? 1) > (o.n ?? 1)
  if (o.logprobs || ranked || o.echo) sampling.logprobs = o.logprobs?.top ?? 0
  // Echo needs the prompt's tokens back (for a token-id prompt, its text); logprobs their scores too.
  if (o.echo) sampling.promptLogprobs = o.logprobs?.top ?? 0
  if (o.logprobs) run.formatter = new LogprobsFormatter(o.logprobs.kind, o.echo === true, o.echoOnly !== true)
  if (o.echoOnly) run.echoOnly = true
  if (o.echo) {
    if (built.req.text !== null) run.echoText = built.req.text
    else run.echoFromTokens = true
  }
  if (total > 1) tracing.reqAttrs(built.req.rid, { [tracing.GEN_AI_REQUEST_CHOICE_COUNT]: sequencesPerPrompt(o), [tracing.SPANSERVE_CHOICE_INDEX]: index })
}
