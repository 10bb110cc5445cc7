/**
 * The scheduler's KV: the block pool's reference counts, the radix tree over block-aligned prefixes
 * (match, split, insert, LRU leaf-first eviction, locks), and the budget rule that cached tokens never
 * keep out a request that would fit without the cache.
 */
import t from 'tap'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import { KvBlockPool } from '../../src/scheduler/kv-block-pool.ts'
import { RadixCache } from '../../src/scheduler/radix-cache.ts'
import { KvSpace } from '../../src/scheduler/kv-space.ts'

/** `blocks` blocks of tokens: block i holds BT copies of ids[i]. */
const prompt = (...ids: number[]): Int32Array => Int32Array.from(ids.flatMap((v) => Array<number>(BT).fill(v)))
const plus = (p: Int32Array, extra: number): Int32Array => Int32Array.from([...p, ...Array<number>(extra).fill(999)])

t.test('the pool counts references and reuses freed ids', async (t) => {
  const pool = new KvBlockPool()
  const [a, b] = pool.allocate(2)
  pool.share([a!])
  t.same(pool.release([a!, b!]), [b], 'a is still shared')
  t.equal(pool.refCount(a!), 1)
  t.same(pool.release([a!]), [a])
  t.equal(pool.used, 0)
  t.same(pool.allocate(2).sort(), [a, b].sort(), 'freed ids come back')
  t.throws(() => pool.release([77]), /not allocated/)
})

t.test('the tree matches whole blocks, splits edges, and holds a reference to what it caches', async (t) => {
  const pool = new KvBlockPool()
  const cache = new RadixCache(pool)
  const p = prompt(1, 2, 3)
  const blocks = pool.allocate(3)
  t.equal(cache.insert(p, blocks), 3 * BT)
  t.same(pool.release(blocks), [], 'the tree keeps the blocks once the request lets go')
  t.equal(cache.insert(p, blocks), 0, 'already cached')

  let m = cache.match(plus(prompt(1, 2, 3, 4), 5))
  t.equal(m.tokens, 3 * BT, 'longest prefix')
  t.same(m.blocks, blocks)
  m = cache.match(prompt(1, 2, 9))
  t.equal(m.tokens, 2 * BT, 'a partial edge match splits it')
  t.same(m.blocks, blocks.slice(0, 2))
  m = cache.match(Int32Array.from([...prompt(1), ...Array<number>(BT - 1).fill(2)]))
  t.equal(m.tokens, BT, 'a partly matched block does not count')
  t.equal(cache.match(prompt(1, 2, 3), 3 * BT - 1).tokens, 2 * BT, 'the limit keeps the last prompt token out')

  // A branch: [1,2,7,8] shares [1,2] with [1,2,3].
  const other = pool.allocate(4)
  t.equal(cache.insert(prompt(1, 2, 7, 8), other), 2 * BT, 'only the new part is added')
  pool.release(other)
  t.equal(pool.refCount(other[0]!), 0, 'its duplicate of the shared prefix is free')
  t.equal(cache.tokens, 5 * BT)
})

t.test('eviction takes unlocked leaves, least recently used first, never a locked path', async (t) => {
  const pool = new KvBlockPool()
  const cache = new RadixCache(pool)
  const add = (p: Int32Array) => {
    const b = pool.allocate(p.length / BT)
    cache.insert(p, b)
    pool.release(b)
  }
  add(prompt(1, 2, 3)) // oldest
  add(prompt(4, 5))
  add(prompt(1, 2, 6)) // splits [1,2,3] into [1,2] + [3], [6]
  const locked = cache.match(prompt(4, 5))
  cache.lock(locked.node)
  t.equal(cache.lockedTokens, 2 * BT)
  let r = cache.evict(1)
  t.equal(r.tokens, BT, 'one leaf: [3], the least recently used')
  t.equal(r.freed.length, 1)
  t.equal(cache.match(prompt(1, 2, 3)).tokens, 2 * BT)
  r = cache.evict(100 * BT)
  t.equal(r.tokens, 3 * BT, '[6], then its parent [1,2] once a leaf; [4,5] is locked')
  t.equal(cache.tokens, 2 * BT)
  cache.unlock(locked.node)
  t.equal(cache.evict(100 * BT).tokens, 2 * BT)
  t.equal(pool.used, 0, 'every block free')
})

t.test('KvSpace: a cached prefix is reserved once, and evicted before a request would wait', async (t) => {
  const kv = new KvSpace(10 * BT, true)
  const p = plus(prompt(1, 2, 3, 4), 3)
  const a = kv.admit(p, p.length + BT)!
  t.equal(a.cached, 0)
  t.equal(a.blocks.length, Math.ceil((p.length + BT) / BT), 'a table for prompt + max_tokens')
  kv.finish(p, a, true)
  t.equal(kv.cacheTokens, 4 * BT, "the prompt's whole blocks stay cached")
  t.equal(kv.usedTokens, 0)
  t.same([...kv.takeFreed()].sort(), [...a.blocks.slice(4)].sort(), 'the rest is freed for the worker')

  const b = kv.admit(p, p.length + BT)!
  t.equal(b.cached, 4 * BT, 'the same prompt starts after its cached blocks')
  t.same([...b.blocks.slice(0, 4)], [...a.blocks.slice(0, 4)], 'on the same blocks')
  t.equal(kv.takeCounts().hit, 4 * BT)
  kv.finish(p, b, false)

  // A request of the whole budget fits: the cache makes room.
  const big = plus(prompt(9), 10 * BT - BT - 1)
  const c = kv.admit(big, 10 * BT)
  t.ok(c, 'admitted by evicting the cache')
  t.equal(kv.cacheTokens, 0)
  kv.finish(big, c!, false)

  // A fully cached prompt still leaves its last token to compute.
  const exact = prompt(5, 6)
  const d = kv.admit(exact, exact.length + 1)!
  kv.finish(exact, d, true)
  const e = kv.admit(exact, exact.length + 1)!
  t.equal(e.cached, BT, 'one block short of the whole prompt')
  kv.finish(exact, e, true)
})

t.test('KvSpace without the cache reserves exactly as the token budget always did', async (t) => {
  const kv = new KvSpace(100, false)
  const p = new Int32Array(40).fill(3)
  const a = kv.admit(p, 60)!
  t.equal(kv.usedTokens, 60)
  t.equal(kv.admit(p, 41), null, '60 + 41 > 100')
  const b = kv.admit(p, 40)!
  kv.finish(p, a, true)
  kv.finish(p, b, true)
  t.equal(kv.usedTokens, 0)
  t.equal(kv.cacheTokens, 0)
  t.equal(kv.usedBlocks, 0)
})

t.test('KvSpace: a prompt joins the cache once prefilled, shared while its request still runs', async (t) => {
  const kv = new KvSpace(20 * BT, true)
  const p = plus(prompt(1, 2, 3), 5)
  const a = kv.admit(p, p.length + BT)!
  const used = kv.usedTokens
  kv.prefilled(p, a)
  t.equal(kv.cacheTokens, 3 * BT, 'its whole blocks are cached now')
  t.equal(kv.usedTokens, used, 'moved from its charge to the cache, not counted twice')
  const b = kv.admit(p, p.length + BT)!
  t.equal(b.cached, 3 * BT, 'a second request with the prompt shares them before the first ends')
  t.same([...b.blocks.slice(0, 3)], [...a.blocks.slice(0, 3)])
  t.equal(kv.usedTokens, 3 * BT + 2 * (BT + 5), 'the shared prefix is counted once, each request charged only for the rest')
  kv.finish(p, a, false)
  kv.finish(p, b, true)
  t.equal(kv.usedTokens, 0, 'both gone: nothing held')
  t.equal(kv.cacheTokens, 3 * BT, 'the prefix stays cached')

  // Two requests admitted before either cached the prompt: the second's copies stay its own.
  const q = plus(prompt(4, 5), 3)
  const c = kv.admit(q, q.length + 1)!
  const d = kv.admit(q, q.length + 1)!
  kv.prefilled(q, c)
  const before = kv.usedTokens
  kv.prefilled(q, d)
  t.equal(kv.usedTokens, before, 'nothing moves for the second')
  kv.finish(q, c, true)
  kv.finish(q, d, true)
  t.equal(kv.usedTokens, 0)
  t.equal(kv.cacheTokens, 5 * BT)
})
