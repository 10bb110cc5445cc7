/**
 * A generation request's parameters, checked (checks.ts) and built once from what its endpoint asks
 * (ask.ts), as vLLM's to_sampling_params: each sequence's sampling, max_tokens, stops, how many
 * sequences, and what comes back with them. Nothing writes them after the build: each sequence's
 * request (request.ts) and run (run.ts) read them, and the tokenizer projects their sampling for the
 * worker (src/sampling/for-worker.ts).
 */
import { outputConstraint, type ConstraintRequest } from '../structured-output/request.ts'
import type { OutputConstraint } from '../../../structured-output/constraint.ts'
import type { SamplingFields } from '../../../sampling/body.ts'
import type { SamplingDefaults } from '../../../sampling/defaults.ts'
import type { SamplingParams } from '../../../sampling/params.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import type { GenerationAsk } from './ask.ts'
import { checkAsk, checkModel } from './checks.ts'
import type { LogprobsKind } from './logprobs.ts'
import type { Bootstrap } from '../../../ipc/messages.ts'
import { bootstrapOf } from './disaggregation.ts'

export interface GenerationParams {
  /** Per sequence of a prompt: sequence j of a seeded request draws from seed + j (vLLM's); all else is alike. */
  readonly sampling: readonly Readonly<SamplingParams>[]
  /** Tokens to generate; -1: the rest of the context (the tokenizer knows how much). */
  readonly maxTokens: number
  readonly stop: readonly string[]
  readonly ignoreEos: boolean
  /** Choices returned per prompt. */
  readonly n: number
  /** Sequences generated per prompt: best_of (the n most likely returned), else n. */
  readonly perPrompt: number
  /** The logprobs' shape and alternatives per token, when asked. */
  readonly logprobs: { readonly kind: LogprobsKind; readonly top: number } | null
  /** Completions' echo: the prompt comes back before the completion (with its tokens' logprobs when asked). */
  readonly echo: boolean
  /**
   * max_tokens 0 with echo: the prompt (and its logprobs) alone. It runs as 1 token (vLLM's way: the
   * prefill that scores the prompt samples a first token, so scheduler and worker see a plain
   * request), whose text, logprobs and count are dropped (run.ts); it finishes with "length".
   */
  readonly echoOnly: boolean
  /** vLLM's skip_special_tokens: false keeps special tokens in the text (and in logprobs' tokens). */
  readonly skipSpecialTokens: boolean
  /** Streamed, and where the stream carries usage; null: answered whole. */
  readonly stream: { readonly includeUsage: boolean; readonly continuousUsage: boolean } | null
  /** Prefill/decode disaggregation: the request's room (disaggregation.ts); null: co-located. */
  readonly bootstrap: Bootstrap | null
}

/** Throws (a 4xx for the error handler) on what the request may not ask. */
export async function generationParams(ask: GenerationAsk, info: ServingInfo): Promise<GenerationParams> {
  const echoOnly = ask.maxTokens === 0
  const perPrompt = Math.max(ask.n, ask.bestOf ?? 1)
  const bootstrap = bootstrapOf(ask.body, info.disaggregationMode ?? 'null', perPrompt)
  // A prefill instance computes the prompt's KV and samples the first token; decode does the rest.
  const maxTokens = echoOnly || bootstrap?.host != null ? 1 : (ask.maxTokens ?? ask.defaultMaxTokens)
  checkAsk(ask, maxTokens, info)
  // Structured output: a malformed constraint is a 400 before anything is queued.
  const constraint = await outputConstraint(ask.body as ConstraintRequest)
  checkModel(ask.body, info)
  const logprobs = ask.logprobs ? Object.freeze({ kind: ask.logprobsKind, top: ask.topLogprobs ?? 0 }) : null
  const first = samplingOf(ask.body, info.defaults, constraint)
  // The worker computes logprobs only when needed: asked, best_of's ranking, or echo (the prompt's
  // tokens back, for a token-id prompt its text; with logprobs, their scores too).
  if (logprobs || perPrompt > ask.n || ask.echo) first.logprobs = logprobs?.top ?? 0
  if (ask.echo) first.promptLogprobs = logprobs?.top ?? 0
  const sampling = [Object.freeze(first)]
  for (let j = 1; j < perPrompt; j++) sampling.push(first.seed === null ? sampling[0]! : Object.freeze({ ...first, seed: (first.seed + j) >>> 0 }))
  const so = ask.body.stream_options
  const includeUsage = so?.include_usage === true
  return Object.freeze({
    sampling: Object.freeze(sampling),
    maxTokens,
    stop: Object.freeze(stopsOf(ask.body)),
    ignoreEos: ask.body.ignore_eos === true,
    n: ask.n,
    perPrompt,
    logprobs,
    echo: ask.echo,
    echoOnly,
    skipSpecialTokens: ask.keepSpecialTokens !== true,
    stream: ask.body.stream ? Object.freeze({ includeUsage, continuousUsage: includeUsage && so?.continuous_usage_stats === true }) : null,
    bootstrap: bootstrap && Object.freeze(bootstrap),
  })
}

function stopsOf(body: SamplingBody): string[] {
  if (body.stop == null) return []
  return typeof body.stop === 'string' ? [body.stop] : [...body.stop]
}

/** Seeds wider than 32 bits are folded: the sampler's generator has 32 bits of state. */
function foldSeed(seed: number): number {
  return Number(BigInt.asUintN(32, BigInt(seed)))
}

/** The body's sampling fields, else the model's defaults; neutral values of the optional fields are left out. */
function samplingOf(body: SamplingFields, defaults: SamplingDefaults, constraint: OutputConstraint | null): SamplingParams {
  const topK = body.top_k ?? defaults.topK
  const p: SamplingParams = {
    temperature: body.temperature ?? defaults.temperature,
    topP: body.top_p ?? defaults.topP,
    topK: topK < 0 ? 0 : topK,
    seed: body.seed == null ? null : foldSeed(body.seed),
  }
  if (body.presence_penalty) p.presencePenalty = body.presence_penalty
  if (body.frequency_penalty) p.frequencyPenalty = body.frequency_penalty
  const repetition = body.repetition_penalty ?? defaults.repetitionPenalty
  if (repetition !== 1) p.repetitionPenalty = repetition
  const minP = body.min_p ?? defaults.minP
  if (minP > 0) p.minP = minP
  if (body.min_tokens) p.minTokens = body.min_tokens
  if (body.stop_token_ids && body.stop_token_ids.length > 0) p.stopTokenIds = [...new Set(body.stop_token_ids)]
  if (body.logit_bias) {
    const pairs: [number, number][] = []
    for (const [id, bias] of Object.entries(body.logit_bias)) if (bias !== 0) pairs.push([Number(id), bias])
    if (pairs.length > 0) p.logitBias = pairs
  }
  if (constraint) p.constraint = constraint
  return p
}
