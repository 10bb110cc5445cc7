/**
 * The bounded waiting queue, in arrival order. Which request leaves it next is the fairness
 * policy's choice (./fairness.ts): first come, first served within a client.
 */
import { clientOf, type VirtualTokenCounter } from './fairness.ts'
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

  /**
   * The earliest request of the client with the least counter among those `eligible`, or undefined.
   * The scan stops once every active client has been seen: with one client, the head.
   */
  next(vtc: VirtualTokenCounter, eligible: (client: string) => boolean): SchedRequest | undefined {
    const seen = new Set<string>()
    let best: SchedRequest | undefined
    let bestCounter = Infinity
    for (const r of this.items) {
      const c = clientOf(r)
      if (seen.has(c)) continue
      seen.add(c)
      if (eligible(c)) {
        const counter = vtc.counter(c)
        if (counter < bestCounter) {
          best = r
          bestCounter = counter
        }
      }
      if (seen.size >= vtc.activeClients) break
    }
    return best
  }

  /** Take a request out (the one next() chose). */
  take(req: SchedRequest): void {
    const i = this.items.indexOf(req)
    if (i >= 0) this.items.splice(i, 1)
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
