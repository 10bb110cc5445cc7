/**
 * Data-parallel dispatch: each request goes to the group with the fewest outstanding tokens
 * (prompt + max_tokens of its unfinished requests); ties go round robin. A group that is down is
 * skipped until it is enabled again.
 *
 * Cache-aware (the SGLang router's policy, with the prefix cache on): a request goes to the group
 * believed to hold the longest cached prefix of its prompt, unless the load is imbalanced (the most
 * loaded group has more than `absThreshold` tokens over the least, and more than `relThreshold`
 * times as many), when it goes to the least loaded as before. Without a match it goes there too.
 */
import { PrefixIndex } from './prefix-index.ts'

export interface CacheAwareOptions {
  /** Whole-block prefixes remembered per group (about its KV budget in blocks). */
  capBlocks: number
  absThreshold: number
  relThreshold: number
}

export class DpDispatcher {
  private readonly load: number[]
  private readonly up: boolean[]
  private next = 0
  private readonly index: PrefixIndex | null

  constructor(
    size: number,
    private readonly cacheAware?: CacheAwareOptions,
  ) {
    this.load = new Array<number>(size).fill(0)
    this.up = new Array<boolean>(size).fill(true)
    this.index = cacheAware ? new PrefixIndex(size, cacheAware.capBlocks) : null
  }

  enable(dp: number): void {
    this.up[dp] = true
  }

  disable(dp: number): void {
    this.up[dp] = false
    this.load[dp] = 0
    // Its processes restart with an empty cache.
    this.index?.clear(dp)
  }

  /** The group for this prompt (-1 when every group is down), and the tokens it is believed to have cached. */
  pickFor(ids: ArrayLike<number>, tokens: number): { dp: number; match: number } {
    if (!this.index || !this.cacheAware) return { dp: this.pick(tokens), match: 0 }
    const matches = this.index.matches(ids)
    let min = Infinity
    let max = -Infinity
    let best = -1
    for (let d = 0; d < this.load.length; d++) {
      if (!this.up[d]) continue
      min = Math.min(min, this.load[d]!)
      max = Math.max(max, this.load[d]!)
      if (matches[d]! > 0 && (best < 0 || matches[d]! > matches[best]! || (matches[d] === matches[best] && this.load[d]! < this.load[best]!))) best = d
    }
    const imbalanced = max - min > this.cacheAware.absThreshold && max > min * this.cacheAware.relThreshold
    const dp = best >= 0 && !imbalanced ? best : this.pick(tokens)
    if (dp < 0) return { dp, match: 0 }
    if (dp === best && !imbalanced) this.load[dp]! += tokens
    this.index.add(dp, ids)
    return { dp, match: matches[dp]! }
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
