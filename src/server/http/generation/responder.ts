/**
 * The answer to a generation request (completions, chat, Responses), for one sequence or several
 * (n > 1, best_of, several prompts), whole or streamed, in the endpoint's shape (shape.ts; the
 * Responses API's answer is its own protocol there: named events, no choices). Each sequence is
 * one engine request and its own run (run.ts: trace span, metrics, abort on hang-up). Choices are
 * indexed prompt-major, n per prompt; with best_of > n, the n of highest total logprob are kept.
 * Streamed (server-sent events), each choice's chunks go out as they come (several per output, or
 * none while a parser holds text back), then the include_usage chunk with empty choices after the
 * last (OpenAI's and vLLM's only usage in a stream); an error is a last event once the stream has
 * started, a plain HTTP error before. One sequence failing fails the request and stops the others;
 * so does a client that stops reading a stream (the slow-reader cutoff).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StrOutput } from '../../../ipc/messages.ts'
import { SpanserveError, errorBody } from '../../../errors.ts'
import * as tracing from '../../../tracing/index.ts'
import type { EngineClient, RequestSink } from '../../engine-client/engine-client.ts'
import { sendError } from '../../../http/http-errors.ts'
import type { ServingInfo } from '../serving-info.ts'
import { endSse, sendEvent, startSse } from '../sse.ts'
import type { GenerateInput } from './ask.ts'
import { setChoiceLogprobs } from './logprobs.ts'
import type { GenerationParams } from './params.ts'
import { buildRequest } from './request.ts'
import { GenerationRun } from './run.ts'
import { chunkList, usageOf, type ResponseShape, type Usage } from './shape.ts'

interface Sequence {
  run: GenerationRun
  /** Its own shape: a parser's state is per sequence. */
  shape: ResponseShape
  prompt: number
  /** Its place among its prompt's sequences. */
  seq: number
  last: StrOutput | null
}

/** The request's usage: each prompt once, every generated token. */
function requestUsage(seqs: readonly Sequence[]): Usage {
  // One sequence: its own, with the prefix cache's hits (prompt_tokens_details).
  if (seqs.length === 1) return usageOf(seqs[0]!.last!)
  let prompt = 0
  let completion = 0
  for (const s of seqs) {
    if (s.last === null) continue
    if (s.seq === 0) prompt += s.last.promptTokens
    completion += s.last.completionTokens
  }
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

/** Sum of a sequence's token logprobs: best_of's ranking. */
function score(run: GenerationRun): number {
  let sum = 0
  for (const lp of run.logprobs) sum += lp.logprob
  return sum
}

/** The sequences of a request: `perPrompt` for each prompt, each with its own request and run. */
function sequencesOf(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: EngineClient,
  info: ServingInfo,
  params: GenerationParams,
  inputs: readonly GenerateInput[],
  shape: ResponseShape,
  startMs: number,
): Sequence[] {
  const per = params.perPrompt
  const total = inputs.length * per
  const seqs: Sequence[] = []
  for (let p = 0; p < inputs.length; p++) {
    for (let j = 0; j < per; j++) {
      const built = buildRequest(request, info, params, inputs[p]!, j, shape)
      const run = new GenerationRun(request, reply, engine, info, built, params, startMs)
      // Each sequence's span says which choice it is.
      if (total > 1) tracing.reqAttrs(built.req.rid, { [tracing.GEN_AI_REQUEST_CHOICE_COUNT]: per, [tracing.SPANSERVE_CHOICE_INDEX]: p * per + j })
      seqs.push({ run, shape: seqs.length === 0 ? shape : (shape.fork?.() ?? shape), prompt: p, seq: j, last: null })
    }
  }
  // One 'close' listener per run.
  reply.raw.setMaxListeners(seqs.length + 10)
  return seqs
}

/**
 * Runs every sequence of the request through the engine and answers it; resolves once answered.
 * `startMs`: when the request began, for its latencies (default: now).
 */
export function respond(
  request: FastifyRequest,
  reply: FastifyReply,
  engine: EngineClient,
  info: ServingInfo,
  params: GenerationParams,
  inputs: readonly GenerateInput[],
  shape: ResponseShape,
  startMs = performance.now(),
): Promise<void> {
  const seqs = sequencesOf(request, reply, engine, info, params, inputs, shape, startMs)
  const { n, perPrompt: per, stream } = params
  const { base, headers } = seqs[0]!.run.built
  const res = reply.raw
  const { protocol } = shape
  // An API of its own names its events by their type.
  const send = (event: Record<string, unknown>) => sendEvent(res, event, protocol ? (event.type as string) : undefined)
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
      if (!stream || !started) sendError(reply, headers, err)
      else if (protocol) {
        send(protocol.error(err))
        endSse(res, false)
      } else {
        sendEvent(res, errorBody(err))
        endSse(res)
      }
      resolve()
    }
    const answerWhole = () => {
      if (protocol) {
        const s = seqs[0]!
        void reply.headers(headers).send(protocol.whole(base, s.run.echoText + s.run.completion, s.last!, s.run.formatter ? s.run.formatter.format(s.run.logprobs) : null))
        return
      }
      const choices: Record<string, unknown>[] = []
      let first: Record<string, unknown> | null = null
      for (let p = 0; p < inputs.length; p++) {
        let group = seqs.filter((s) => s.prompt === p)
        // best_of: the n most likely sequences of the prompt, most likely first.
        if (per > n) group = [...group].sort((a, b) => score(b.run) - score(a.run)).slice(0, n)
        group.forEach((s, j) => {
          const whole = s.shape.whole(base, s.run.echoText + s.run.completion, s.last!.finishReason ?? 'stop', usageOf(s.last!))
          first ??= whole
          if (s.run.formatter) setChoiceLogprobs(whole, s.run.formatter.format(s.run.logprobs))
          choices.push({ ...(whole.choices as Record<string, unknown>[])[0]!, index: p * n + j })
        })
      }
      void reply.headers(headers).send({ ...first!, choices, usage: requestUsage(seqs) })
    }
    // continuous_usage_stats (vLLM's): each chunk of a one-sequence stream carries the usage so far.
    const continuousUsage = stream?.continuousUsage === true && seqs.length === 1
    const sendChunks = (s: Sequence, item: StrOutput, firstOfRun: boolean) => {
      if (!started) {
        started = true
        reply.hijack()
        startSse(res, headers, info.streamStallTimeoutMs)
        if (protocol) for (const event of protocol.open(base)) send(event)
      }
      if (item.text === '' && item.finishReason === null && !firstOfRun && !item.logprobs) return
      const logprobs = item.logprobs && s.run.formatter ? s.run.formatter.format([item.logprobs]) : null
      const chunks = chunkList(s.shape.chunk(base, firstOfRun ? s.run.echoText + item.text : item.text, item.finishReason, firstOfRun, logprobs))
      if (chunks.length > 0 && logprobs) setChoiceLogprobs(chunks[0]!, logprobs)
      for (const chunk of chunks) {
        const choices = chunk.choices as Record<string, unknown>[] | undefined
        if (choices?.[0]) choices[0].index = s.prompt * n + s.seq
        if (continuousUsage) chunk.usage = usageOf(item)
        send(chunk)
      }
    }
    const submitted: Sequence[] = []
    const submit = (s: Sequence) => {
      // Hung up while its prompt's first sequence prefilled: its close handler ended every run already.
      if (s.run.done || ended) return
      let firstOfRun = true
      const sink: RequestSink = {
        onOutput: (item) => {
          if (firstOfRun) startFollowers(s)
          if (ended || s.run.done) return
          s.run.output(item)
          // A client that does not read: more than the limit waits for it while a sequence still runs.
          // This sequence stops early; its onError fails the request, which aborts every other
          // sequence (their KV freed) and sends the slow-reader error event once.
          if (stream && s.run.stopIfSlowReader(sink, item)) return
          if (stream) sendChunks(s, item, firstOfRun)
          firstOfRun = false
          if (item.finishReason === null) return
          s.last = item
          s.run.finish(item)
          if (--left > 0) return
          ended = true
          if (stream && protocol) {
            for (const event of protocol.close(base, item)) send(event)
            endSse(res, false)
          } else if (stream) {
            if (stream.includeUsage) sendEvent(res, shape.usageChunk(base, requestUsage(seqs)))
            endSse(res)
          } else answerWhole()
          resolve()
        },
        onError: (engineErr) => {
          if (s.run.done && ended) return
          const err = protocol ? protocol.clientError(engineErr) : engineErr
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
    const followLeader = per > 1 && info.prefixCache && !params.echo
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
