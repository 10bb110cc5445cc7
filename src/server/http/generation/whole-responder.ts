/** The whole answer: one response once the request has finished, or its error. */
import type { GenerationRun } from './run.ts'
import { usageOf, type ResponseShape } from './shape.ts'
import { setChoiceLogprobs } from './logprobs.ts'

export function respondWhole(run: GenerationRun, shape: ResponseShape): Promise<void> {
  const { reply, built } = run
  return new Promise<void>((resolve) => {
    run.submit({
      onOutput: (item) => {
        run.output(item)
        if (item.finishReason === null) return
        run.finish(item)
        const body = shape.whole(built.base, run.echoText + run.completion, item.finishReason, usageOf(item))
        if (run.formatter) setChoiceLogprobs(body, run.formatter.format(run.logprobs))
        void reply.headers(built.headers).send(body)
        resolve()
      },
      onError: (err) => {
        run.answerError(err, false, () => undefined)
        resolve()
      },
    })
  })
}
