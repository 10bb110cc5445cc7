/** The whole answer: one response once the request has finished, or its error. */
import { errorBody } from '../../errors.ts'
import { errorHeaders } from '../http-errors.ts'
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
        run.fail(err)
        void reply.code(err.status).headers({ ...built.headers, ...errorHeaders(err) }).send(errorBody(err))
        resolve()
      },
    })
  })
}
