/**
 * What the tokenizer believes each data-parallel group has cached (the SGLang router's approximate
 * tree): the whole-block prefixes (KV_BLOCK_TOKENS tokens each) of the prompts it sent there, as
 * chained hashes, least recently used dropped beyond a cap near the group's KV budget. Only routing
 * reads it, so a stale entry or a hash collision costs a cache miss, never a wrong output.
 */
import { KV_BLOCK_TOKENS as BT } from '../ipc/kv-blocks.ts'

/** Chained 53-bit hashes of each whole-block prefix of `ids`. */
function prefixHashes(ids: ArrayLike<number>): number[] {
  const out: number[] = []
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (let end = BT; end <= ids.length; end += BT) {
    for (let i = end - BT; i < end; i++) {
      a = Math.imul(a ^ ids[i]!, 0x01000193)
      b = Math.imul(b ^ ids[i]!, 0x5bd1e995) ^ (b >>> 15)
    }
    out.push((a >>> 0) * 2 ** 21 + ((b >>> 0) & 0x1fffff))
  }
  return out
}

export class PrefixIndex {
  /** Per group: prefix hash → present, in least recently used order. */
  private readonly groups: Map<number, true>[]

  /** `capBlocks`: most blocks remembered per group. */
  constructor(
    size: number,
    private readonly capBlocks: number,
  ) {
    this.groups = Array.from({ length: size }, () => new Map<number, true>())
  }

  /** Tokens of `ids`' longest whole-block prefix believed cached in each group. */
  matches(ids: ArrayLike<number>): number[] {
    const hashes = prefixHashes(ids)
    return this.groups.map((g) => {
      let k = 0
      while (k < hashes.length && g.has(hashes[k]!)) k++
      return k * BT
    })
  }

  /** `ids` went to group `dp`: its prefixes are (about to be) cached there. */
  add(dp: number, ids: ArrayLike<number>): void {
    const g = this.groups[dp]!
    for (const h of prefixHashes(ids)) {
      g.delete(h)
      g.set(h, true)
    }
    for (const h of g.keys()) {
      if (g.size <= this.capBlocks) break
      g.delete(h)
    }
  }

  /** The group's cache is gone (its processes restarted). */
  clear(dp: number): void {
    this.groups[dp]!.clear()
  }
}
