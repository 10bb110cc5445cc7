/**
 * KV blocks: the one unit of KV cache that the scheduler allocates and the worker holds (vLLM's
 * block manager, SGLang's token-to-KV pool with a page size). A sequence's KV is a table of block
 * ids, each holding KV_BLOCK_TOKENS consecutive positions. The scheduler owns the ids and their
 * reference counts: a block is shared by every sequence whose table names it and by the prefix cache,
 * and is free once none does. The worker keeps each block's data under its id until the scheduler
 * frees it, so a sequence can start from blocks already filled (a cached prefix) at any position
 * that is a block boundary.
 */

/** Positions per block. Prefixes are shared in whole blocks (a partly filled block is never shared). */
export const KV_BLOCK_TOKENS = 16

/** Blocks that hold `tokens` positions. */
export function blocksFor(tokens: number): number {
  return Math.ceil(tokens / KV_BLOCK_TOKENS)
}

/** The block boundary at or below `tokens`. */
export function alignDown(tokens: number): number {
  return tokens - (tokens % KV_BLOCK_TOKENS)
}

/**
 * Block ids with reference counts. Ids are small integers, reused once freed; the pool has no size
 * of its own (the token budget decides how much KV may be held).
 */
export class KvBlockPool {
  private refs: number[] = []
  private free: number[] = []
  private live = 0

  /** Blocks with at least one reference. */
  get used(): number {
    return this.live
  }

  /** `n` fresh blocks, one reference each. */
  allocate(n: number): number[] {
    const ids: number[] = []
    for (let i = 0; i < n; i++) {
      const id = this.free.pop() ?? this.refs.length
      this.refs[id] = 1
      ids.push(id)
    }
    this.live += n
    return ids
  }

  refCount(id: number): number {
    return this.refs[id] ?? 0
  }

  /** One more reference to each block. */
  share(ids: Iterable<number>): void {
    for (const id of ids) {
      if (!(this.refs[id]! > 0)) throw new Error(`KV block ${id} is not allocated`)
      this.refs[id]!++
    }
  }

  /** Drop one reference to each block; returns the blocks that became free. */
  release(ids: Iterable<number>): number[] {
    const freed: number[] = []
    for (const id of ids) {
      if (!(this.refs[id]! > 0)) throw new Error(`KV block ${id} is not allocated`)
      if (--this.refs[id]! === 0) {
        this.free.push(id)
        freed.push(id)
        this.live--
      }
    }
    return freed
  }

  /** Forget every block (the worker dropped its KV). */
  reset(): void {
    this.refs = []
    this.free = []
    this.live = 0
  }
}
