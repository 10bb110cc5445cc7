/**
 * Data-parallel dispatch: each request goes to the group with the fewest outstanding tokens
 * (prompt + max_tokens of its unfinished requests); ties go round robin. A group that is down is
 * skipped until it is enabled again.
 */
export class DpDispatcher {
  private readonly load: number[]
  private readonly up: boolean[]
  private next = 0

  constructor(size: number) {
    this.load = new Array<number>(size).fill(0)
    this.up = new Array<boolean>(size).fill(true)
  }

  enable(dp: number): void {
    this.up[dp] = true
  }

  disable(dp: number): void {
    this.up[dp] = false
    this.load[dp] = 0
  }

  /** The chosen group, or -1 when every group is down. */
  pick(tokens: number): number {
    const n = this.load.length
    let best = -1
    for (let k = 0; k < n; k++) {
      const d = (this.next + k) % n
      if (!this.up[d]) continue
      if (best < 0 || this.load[d]! < this.load[best]!) best = d
    }
    if (best < 0) return -1
    this.next = (best + 1) % n
    this.load[best]! += tokens
    return best
  }

  done(dp: number, tokens: number): void {
    this.load[dp] = Math.max(0, this.load[dp]! - tokens)
  }

  reset(): void {
    this.load.fill(0)
  }
}
