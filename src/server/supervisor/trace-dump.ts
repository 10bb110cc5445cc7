/**
 * POST /v1/trace/dump across processes: the server sends its own flight-recorder window to its export
 * queue, asks every child for theirs (trace_dump), and sums their answers (trace_dumped). A child
 * that does not answer in time is counted as unanswered, not waited for.
 */
import type { TraceDump, TraceDumped } from '../../ipc/messages.ts'
import { dumpFlightRecorder } from '../../tracing/index.ts'

/** What a dump sent to the export queues of every process. */
export interface DumpResult {
  traces: number
  spans: number
  /** Processes asked, this one included, and those that answered in time. */
  processes: number
  answered: number
}

interface Pending {
  result: DumpResult
  left: number
  done: () => void
}

export class TraceDumps {
  private nextId = 0
  private readonly pending = new Map<number, Pending>()

  /** @param broadcast posts to every child, returning how many */
  constructor(
    private readonly broadcast: (msg: TraceDump) => number,
    private readonly timeoutMs: number,
  ) {}

  onReply(msg: TraceDumped): void {
    const p = this.pending.get(msg.id)
    if (p === undefined) return
    p.result.traces += msg.traces
    p.result.spans += msg.spans
    p.result.answered++
    if (--p.left === 0) p.done()
  }

  async dump(): Promise<DumpResult> {
    const id = ++this.nextId
    const asked = this.broadcast({ type: 'trace_dump', id })
    const result: DumpResult = { traces: 0, spans: 0, processes: asked + 1, answered: 0 }
    const answers = new Promise<void>((resolve) => {
      if (asked === 0) return resolve()
      const timer = setTimeout(resolve, this.timeoutMs)
      this.pending.set(id, {
        result,
        left: asked,
        done: () => {
          clearTimeout(timer)
          resolve()
        },
      })
    })
    const own = await dumpFlightRecorder()
    await answers
    this.pending.delete(id)
    result.traces += own.traces
    result.spans += own.spans
    result.answered++
    return result
  }
}
