import type { OutputConstraint } from '../structured-output/constraint.ts'

/**
 * SamplingParams: how one request's tokens are drawn, as it crosses server → tokenizer → scheduler →
 * worker. The fields past `seed` are optional and absent at their neutral value, so a request that
 * uses none of them carries, and costs, nothing for them.
 */
export interface SamplingParams {
  /** 0 means greedy. */
  temperature: number
  topP: number
  /** 0 means no top-k cut. */
  topK: number
  /** null: the worker draws one. */
  seed: number | null
  /**
   * Draws the generator already made for this request: a resumed request's tokens so far (one draw
   * per sampled token), which the sampler skips so that it continues the same sequence. Absent: 0.
   */
  draws?: number
  /** OpenAI's: subtracted once from the logit of every token generated so far (−2…2). */
  presencePenalty?: number
  /** OpenAI's: subtracted from a token's logit once per time it was generated so far (−2…2). */
  frequencyPenalty?: number
  /** vLLM's: logits of tokens in the prompt or generated so far divided (if > 0) or multiplied by it (> 0; 1 is off). */
  repetitionPenalty?: number
  /** vLLM's: tokens whose probability is below min_p times the best token's are dropped (0…1). */
  minP?: number
  /** vLLM's: EOS and stop_token_ids cannot be sampled before this many tokens. */
  minTokens?: number
  /** vLLM's: these token ids end the request (finish reason "stop"); their text is not returned. */
  stopTokenIds?: number[]
  /** OpenAI's: [token id, bias −100…100] pairs added to the logits. */
  logitBias?: [number, number][]
  /**
   * Set by the tokenizer for the worker, only when a penalty needs them: the distinct prompt token
   * ids (repetition_penalty), the tokens a resumed request had generated (seen again by the sampler),
   * and the ids min_tokens holds back (EOS unless ignore_eos, and stop_token_ids).
   */
  promptIds?: number[]
  generatedIds?: number[]
  minTokensStopIds?: number[]
  /**
   * Constrained decoding (src/structured-output/ and src/server/http/structured-output/): the output is held to this JSON schema, regex, choice,
   * grammar or tool-call format; the worker masks what it does not allow.
   */
  constraint?: OutputConstraint
  /**
   * Logprobs of each sampled token and of this many most likely tokens (0…20), from the raw model
   * output; absent: none computed (the request pays nothing for them).
   */
  logprobs?: number
  /** Logprobs of the prompt's tokens too, with this many most likely at each position (completions' echo). */
  promptLogprobs?: number
}

/** Whether the worker's sampler has more to do than temperature, top-k and top-p. */
export function adjustsLogits(p: SamplingParams): boolean {
  return (p.presencePenalty ?? 0) !== 0 || (p.frequencyPenalty ?? 0) !== 0 || (p.repetitionPenalty ?? 1) !== 1 || (p.minTokens ?? 0) > 0 || (p.logitBias?.length ?? 0) > 0
}
