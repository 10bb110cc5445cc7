/** The bounded first-come-first-served waiting queue. */
import type { SchedRequest } from './request.ts'

export class WaitingQueue {
  private items: SchedRequest[] = []

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.items.length
  }

  /** False when full: the caller answers 429. */
  push(req: SchedRequest): boolean {
    if (this.items.length >= this.capacity) return false
    this.items.push(req)
    return true
  }

  peek(): SchedRequest | undefined {
    return this.items[0]
  }

  shift(): SchedRequest | undefined {
    return this.items.shift()
  }

  remove(rid: string): SchedRequest | undefined {
    const i = this.items.findIndex((r) => r.rid === rid)
    return i < 0 ? undefined : this.items.splice(i, 1)[0]
  }

  clear(): SchedRequest[] {
    const all = this.items
    this.items = []
    return all
  }

  /** Tokens still to prefill and generate, for least-loaded dispatch and metrics. */
  outstandingTokens(): number {
    let n = 0
    for (const r of this.items) n += r.inputIds.length + r.maxTokens
    return n
  }
}
