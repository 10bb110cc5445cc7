/**
 * The streamed answer (server-sent events): a chunk per output (or several, or none while a parser
 * holds text back), the include_usage chunk with empty choices after the last (OpenAI's and vLLM's
 * only usage in a stream; vLLM's continuous_usage_stats adds it to every chunk), and an error as a
 * last event once the stream has started (a plain HTTP error before).
 */
import type { StrOutput } from '../../../ipc/messages.ts'
import { errorBody } from '../../../errors.ts'
import type { RequestSink } from '../../engine-client/engine-client.ts'
import type { SamplingBody } from '../schemas.ts'
import { endSse, sendEvent, startSse } from '../sse.ts'
import type { GenerationRun } from './run.ts'
import { chunkList, usageOf, type ResponseShape } from './shape.ts'
import { setChoiceLogprobs } from './logprobs.ts'

export function respondStreamed(run: GenerationRun, shape: ResponseShape, options: SamplingBody['stream_options']): Promise<void> {
  const { reply, info, built } = run
  const res = reply.raw
  const includeUsage = options?.include_usage === true
  const continuousUsage = includeUsage && options?.continuous_usage_stats === true
  let first = true
  let started = false
  const begin = () => {
    if (started) return
    started = true
    reply.hijack()
    startSse(res, built.headers, info.streamStallTimeoutMs)
  }
  return new Promise<void>((resolve) => {
    const sink: RequestSink = {
      onOutput: (item: StrOutput) => {
        begin()
        run.output(item)
        if (run.stopIfSlowReader(sink, item)) return
        if (item.text !== '' || item.finishReason !== null || first || item.logprobs) {
          const chunks = chunkList(shape.chunk(built.base, first ? run.echoText + item.text : item.text, item.finishReason, first))
          first = false
          if (chunks.length > 0 && item.logprobs && run.formatter) setChoiceLogprobs(chunks[0]!, run.formatter.format([item.logprobs]))
          for (const chunk of chunks) {
            if (continuousUsage) chunk.usage = usageOf(item)
            sendEvent(res, chunk)
          }
        }
        if (item.finishReason !== null) {
          run.finish(item)
          if (includeUsage) sendEvent(res, shape.usageChunk(built.base, usageOf(item)))
          endSse(res)
          resolve()
        }
      },
      onError: (err) => {
        run.answerError(err, started, () => {
          sendEvent(res, errorBody(err))
          endSse(res)
        })
        resolve()
      },
    }
    run.submit(sink)
  })
}
