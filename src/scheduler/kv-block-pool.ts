/** The scheduler's KV block allocator (the blocks themselves: src/ipc/kv-blocks.ts). */

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
