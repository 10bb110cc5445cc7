/** The body thread: parses the big bodies it is sent (parse.ts) and answers each by its id. */
import { parentPort } from 'node:worker_threads'
import { parseJsonBody, type BodyOutcome, type PromptCheck } from './parse.ts'

export interface BodyJob {
  id: number
  bytes: Uint8Array
  check: PromptCheck | null
}

export interface BodyAnswer {
  id: number
  outcome: BodyOutcome
}

parentPort!.on('message', (job: BodyJob) => {
  const answer: BodyAnswer = { id: job.id, outcome: parseJsonBody(job.bytes, job.check) }
  parentPort!.postMessage(answer)
})
