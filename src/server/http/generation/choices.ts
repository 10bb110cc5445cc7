/**
 * A request of several sequences (n > 1, best_of, several prompts): one engine request per sequence,
 * each its own run (trace span, metrics, abort on hang-up), answered together. Choices are indexed
 * prompt-major, n per prompt; with best_of > n, the n of highest total logprob are kept. A stream
 * interleaves the choices' chunks as they come; the usage sums the prompts (each once) and every
 * generated token. One sequence failing fails the request and stops the others; so does a client that
 * stops reading a stream (the slow-reader cutoff, as for one sequence).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StrOutput } from '../../../ipc/messages.ts'
import type { OutputConstraint } from '../../../model/grammar/constraint.ts'
import { SpanserveError, errorBody } from '../../../errors.ts'
import type { EngineClient, RequestSink } from '../../engine-client/engine-client.ts'
import { sendError } from '../http-errors.ts'
import type { SamplingBody } from '../schemas.ts'
import type { ServingInfo } from '../serving-info.ts'
import { endSse, sendEvent, startSse } from '../sse.ts'
import { setChoiceLogprobs } from './logprobs.ts'
import { prepareSequence, sequencesPerPrompt, type GenerationOptions } from './options.ts'
import { buildRequest, type GenerateInput } from './request.ts'
import { GenerationRun } from './run.ts'
import { chunkList, type ResponseShape, type Usage } from './shape.ts'

interface Sequence {
  run: GenerationRun
  /** Its own shape: a parser's state is per sequence. */
  shape: ResponseShape
  prompt: number
  /** Its place among its prompt's sequences. */
  seq: number
  last: StrOutput | null
}

function usageOf(seqs: readonly Sequence[]): Usage {
  let prompt = 0
  let completion = 0
  for (const s of seqs) {
    if (s.last === null) continue
    if (s.seq === 0) prompt += s.last.promptTokens
    completion += s.last.completionTokens
  }
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

function choiceOf(body: Record<string, unknown>, index: number): Record<string, unknown> {
  const choice = { ...(body.choices as Record<string, unknown>[])[0]! }
  choice.index = index
  return choice
}

/** Sum of a sequence's token logprobs: best_of's ranking. */
function score(run: GenerationRun): number {
  let sum = 0
  for (const lp of run.logprobs) sum += lp.logprob
  return sum
}

export async function serveChoices(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: EngineClient,
  info: ServingInfo,
  body: SamplingBody,
  inputs: readonly GenerateInput[],
  shape: ResponseShape,
  o: GenerationOptions,
  constraint: OutputConstraint | null,
): Promise<void> {
  const startMs = performance.now()
  const per = sequencesPerPrompt(o)
  const n = o.n ?? 1
  const seqs: Sequence[] = []
  for (let p = 0; p < inputs.length; p++) {
    for (let j = 0; j < per; j++) {
      const built = buildRequest(request, info, body, inputs[p]!, shape, constraint)
      const run = new GenerationRun(request, reply, engine, info, built, startMs)
      prepareSequence(run, built, o, j, p * per + j, inputs.length * per)
      seqs.push({ run, shape: shape.fork?.() ?? shape, prompt: p, seq: j, last: null })
    }
  }
  // One 'close' listener per run.
  reply.raw.setMaxListeners(seqs.length + 10)
  const { base, headers } = seqs[0]!.run.built
  const res = reply.raw
  let started = false
  let ended = false
  let left = seqs.length

  return new Promise<void>((resolve) => {
    if (seqs.every((s) => s.run.done)) return resolve()
    const stopOthers = (err: SpanserveError) => {
      for (const s of seqs) {
        if (s.run.done) continue
        s.run.done = true
        engine.abort(s.run.rid, err.code)
        s.run.fail(err)
      }
    }
    const fail = (err: SpanserveError) => {
      if (ended) return
      ended = true
      stopOthers(err)
      if (!body.stream || !started) sendError(reply, headers, err)
      else {
        sendEvent(res, errorBody(err))
        endSse(res)
      }
      resolve()
    }
    const answerWhole = () => {
      const choices: Record<string, unknown>[] = []
      let first: Record<string, unknown> | null = null
      for (let p = 0; p < inputs.length; p++) {
        let group = seqs.filter((s) => s.prompt === p)
        // best_of: the n most likely sequences of the prompt, most likely first.
        if (per > n) group = [...group].sort((a, b) => score(b.run) - score(a.run)).slice(0, n)
        group.forEach((s, j) => {
          const item = s.last!
          const whole = s.shape.whole(base, s.run.echoText + s.run.completion, item.finishReason ?? 'stop', usageOf([s]))
          first ??= whole
          if (s.run.formatter) setChoiceLogprobs(whole, s.run.formatter.format(s.run.logprobs))
          choices.push(choiceOf(whole, p * n + j))
        })
      }
      void reply.headers(headers).send({ ...first!, choices, usage: usageOf(seqs) })
    }
    const includeUsage = body.stream_options?.include_usage === true
    const onOutput = (s: Sequence, index: number, item: StrOutput, firstOfRun: boolean) => {
      if (!body.stream) return
      if (!started) {
        started = true
        reply.hijack()
        startSse(res, headers, info.streamStallTimeoutMs)
      }
      if (item.text === '' && item.finishReason === null && !firstOfRun && !item.logprobs) return
      const chunks = chunkList(s.shape.chunk(base, firstOfRun ? s.run.echoText + item.text : item.text, item.finishReason, firstOfRun))
      if (chunks.length > 0 && item.logprobs && s.run.formatter) setChoiceLogprobs(chunks[0]!, s.run.formatter.format([item.logprobs]))
      for (const chunk of chunks) {
        const choices = chunk.choices as Record<string, unknown>[]
        if (choices[0]) choices[0].index = index
        sendEvent(res, chunk)
      }
    }
    const submitted: Sequence[] = []
    const submit = (s: Sequence) => {
      // Hung up while its prompt's first sequence prefilled: its close handler ended every run already.
      if (s.run.done || ended) return
      const index = s.prompt * n + s.seq
      let firstOfRun = true
      const sink: RequestSink = {
        onOutput: (item) => {
          if (firstOfRun) startFollowers(s)
          if (ended || s.run.done) return
          s.run.output(item)
          // A client that does not read (stream-responder.ts's rule, for the whole request): more than
          // the limit waits for it while a sequence still runs. This sequence stops early; its onError
          // fails the request, which aborts every other sequence (their KV freed) and sends the
          // slow-reader error event once.
          if (body.stream && s.run.stopIfSlowReader(sink, item)) return
          onOutput(s, index, item, firstOfRun)
          firstOfRun = false
          if (item.finishReason === null) return
          s.last = item
          s.run.finish(item)
          if (--left > 0) return
          ended = true
          if (body.stream) {
            if (includeUsage) sendEvent(res, shape.usageChunk(base, usageOf(seqs)))
            endSse(res)
          } else answerWhole()
          resolve()
        },
        onError: (err) => {
          if (s.run.done && ended) return
          s.run.fail(err)
          fail(err)
        },
      }
      s.run.submit(sink)
      submitted.push(s)
    }
    // Parallel sampling on the prefix cache: a prompt's first sequence goes alone, and the others
    // follow once it has its first token, when the scheduler has cached the prompt's whole blocks:
    // they share them and each prefills only the prompt's last partial block. The first token of the
    // response is not held back. Prompt logprobs (echo) are computed per sequence, cache or not.
    const followLeader = per > 1 && info.prefixCache && !seqs[0]!.run.built.req.sampling.promptLogprobs
    const followers = new Map<number, Sequence[]>()
    const startFollowers = (leader: Sequence) => {
      const waiting = leader.seq === 0 ? followers.get(leader.prompt) : undefined
      if (!waiting) return
      followers.delete(leader.prompt)
      try {
        for (const s of waiting) submit(s)
      } catch (err) {
        fail(err instanceof SpanserveError ? err : new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', String(err)))
      }
    }
    try {
      for (const s of seqs) {
        if (followLeader && s.seq > 0) {
          const list = followers.get(s.prompt) ?? []
          list.push(s)
          followers.set(s.prompt, list)
        } else submit(s)
      }
    } catch (err) {
      // Not accepted (the engine is not serving): the ones already running stop; the error handler answers.
      ended = true
      for (const s of submitted) {
        s.run.done = true
        engine.abort(s.run.rid, 'sibling refused')
      }
      throw err
    }
  })
}
