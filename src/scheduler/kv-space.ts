/**
 * The scheduler's KV cache: the token budget (--max-total-tokens), the KV blocks it allocates
 * (src/ipc/kv-blocks.ts) and, when on, the prefix cache over them.
 *
 * A request admitted reserves prompt + max_tokens, less the prefix it found cached: those tokens are
 * counted once, by the cache, and locked there while it runs, so admitted requests never run out of
 * KV mid-decode. Its block table (the cached prefix's blocks, shared, then fresh ones for the rest)
 * goes to the worker with its first chunk. Once its prompt is prefilled, the prompt's whole blocks join the cache,
 * which keeps them while the budget allows: admission evicts unlocked cache entries, least recently
 * used first, whenever a request needs the room. After evicting every unlocked entry, the tokens in
 * use are at most what the same requests would reserve without the cache, so the cache never makes a
 * request wait that would have run without it.
 */
import { alignDown, blocksFor } from '../ipc/kv-blocks.ts'
import { KvBlockPool } from './kv-block-pool.ts'
import { RadixCache, type RadixNode } from './radix-cache.ts'

/** What an admitted request holds. */
export interface KvHold {
  /** Its block table, enough for prompt + max_tokens. */
  blocks: Int32Array
  /** Prompt tokens found in the prefix cache: the first chunk starts there. */
  cached: number
  /** The cache node it locked (null: no cache, or none matched). */
  node: RadixNode | null
  /** Tokens it reserved in the budget. */
  charge: number
  /** The cache's generation when admitted: a cleared cache does not unlock old nodes. */
  cacheEpoch: number
  /** The pool's: blocks of a pool since reset are not released. */
  poolEpoch: number
}

export class KvSpace {
  private readonly pool = new KvBlockPool()
  private readonly cache: RadixCache | null
  /** Tokens reserved by running requests beyond their cached prefixes. */
  private running = 0
  /** Blocks freed since the last step was built: the worker drops their data. */
  private freed: number[] = []
  private cacheEpoch = 0
  private poolEpoch = 0
  /** Prompt tokens looked up in the cache and found there, since the last takeCounts(). */
  private queried = 0
  private hit = 0

  constructor(
    readonly total: number,
    prefixCache: boolean,
  ) {
    this.cache = prefixCache ? new RadixCache(this.pool) : null
  }

  get cacheEnabled(): boolean {
    return this.cache !== null
  }

  /** Tokens admitted requests hold: their reservations and the cached prefixes they use. */
  get usedTokens(): number {
    return this.running + (this.cache?.lockedTokens ?? 0)
  }

  /** Tokens in the prefix cache. */
  get cacheTokens(): number {
    return this.cache?.tokens ?? 0
  }

  /** Blocks referenced by requests or the cache. */
  get usedBlocks(): number {
    return this.pool.used
  }

  private fits(tokens: number): boolean {
    return this.running + this.cacheTokens + tokens <= this.total
  }

  /**
   * Admit a request of `reserved` tokens with this prompt, evicting cached prefixes it needs the room
   * of; null when it does not fit (it waits). `useCache` false: no cached prefix is looked up.
   */
  admit(prompt: Int32Array, reserved: number, useCache = true): KvHold | null {
    let node: RadixNode | null = null
    let cached = 0
    let prefix: number[] = []
    if (this.cache && useCache) {
      // The last prompt token is always computed: its logits give the first output token.
      const m = this.cache.match(prompt, prompt.length - 1)
      if (m.tokens > 0) {
        node = m.node
        cached = m.tokens
        prefix = m.blocks
        this.cache.lock(node)
      }
    }
    const charge = reserved - cached
    if (!this.fits(charge) && this.cache) {
      const { freed } = this.cache.evict(this.running + this.cacheTokens + charge - this.total)
      this.freed.push(...freed)
    }
    if (!this.fits(charge)) {
      if (node) this.cache!.unlock(node)
      return null
    }
    this.running += charge
    if (this.cache) {
      this.queried += prompt.length
      this.hit += cached
    }
    this.pool.share(prefix)
    const blocks = Int32Array.from([...prefix, ...this.pool.allocate(blocksFor(reserved) - prefix.length)])
    return { blocks, cached, node, charge, cacheEpoch: this.cacheEpoch, poolEpoch: this.poolEpoch }
  }

  /**
   * A request's prompt is prefilled: its whole blocks join the cache now, not when it finishes
   * (SGLang's cache_unfinished_req), so requests sharing the prefix (the n choices of one request,
   * a system prompt under load) reuse them while this one decodes. Those tokens move from the
   * request's charge to the cache and stay locked there until it leaves. Skipped when another request
   * cached more of this prompt since admission: this one's copies of those blocks stay its own.
   */
  prefilled(prompt: Int32Array, hold: KvHold): void {
    if (!this.cache || hold.cacheEpoch !== this.cacheEpoch || hold.poolEpoch !== this.poolEpoch) return
    const whole = prompt.subarray(0, alignDown(prompt.length))
    if (whole.length <= hold.cached) return
    const m = this.cache.match(whole)
    if (m.tokens !== hold.cached || (hold.node !== null && m.node !== hold.node)) return
    const added = this.cache.insert(whole, hold.blocks)
    const leaf = this.cache.match(whole).node
    this.cache.lock(leaf)
    if (hold.node) this.cache.unlock(hold.node)
    hold.node = leaf
    hold.charge -= added
    this.running -= added
  }

  /**
   * A request leaves. `keep`: it finished normally, so its prompt's KV is whole in the worker and its
   * whole blocks join the cache.
   */
  finish(prompt: Int32Array, hold: KvHold, keep: boolean): void {
    if (hold.poolEpoch !== this.poolEpoch) return
    if (this.cache && hold.cacheEpoch === this.cacheEpoch) {
      if (keep) this.cache.insert(prompt.subarray(0, alignDown(prompt.length)), hold.blocks)
      if (hold.node) this.cache.unlock(hold.node)
    }
    this.running -= hold.charge
    this.freed.push(...this.pool.release(hold.blocks))
  }

  /** Blocks freed since the last call, for the next step. */
  takeFreed(): Int32Array {
    const ids = Int32Array.from(this.freed)
    this.freed = []
    return ids
  }

  /** Prompt tokens looked up in the cache, and found there, since the last call. */
  takeCounts(): { queried: number; hit: number } {
    const counts = { queried: this.queried, hit: this.hit }
    this.queried = 0
    this.hit = 0
    return counts
  }

  /** The worker may have lost its KV: forget the cache (running requests keep their own references). */
  dropCache(): void {
    if (!this.cache) return
    this.freed.push(...this.cache.clear())
    this.cacheEpoch++
  }

  /** Everything is gone (a peer process died): no request, no cache, no block. */
  reset(): void {
    this.cache?.clear()
    this.pool.reset()
    this.running = 0
    this.freed = []
    this.cacheEpoch++
    this.poolEpoch++
  }
}
