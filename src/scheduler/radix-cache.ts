/**
 * The prefix cache: a radix tree over token ids (SGLang's RadixCache, with a page size), mapping
 * prompt prefixes to the KV blocks that hold them. Edges are whole blocks (KV_BLOCK_TOKENS tokens);
 * a child is found by its first block's tokens. The tree holds one reference to each of its blocks.
 * A running request locks the path it matched, so it is never evicted under it; unlocked leaves go
 * least recently used first.
 */
import { KV_BLOCK_TOKENS as BT } from '../ipc/kv-blocks.ts'
import type { KvBlockPool } from './kv-block-pool.ts'

export class RadixNode {
  readonly children = new Map<string, RadixNode>()
  /** Requests using this node's KV (and so every ancestor's). */
  lockRef = 0
  lastAccess = 0

  constructor(
    public parent: RadixNode | null,
    /** The edge's tokens, a whole number of blocks. */
    public tokens: Int32Array,
    /** One block per KV_BLOCK_TOKENS tokens of the edge. */
    public blocks: number[],
  ) {}
}

/** The child key: a block's tokens. */
function keyOf(ids: Int32Array, at: number): string {
  return ids.subarray(at, at + BT).join(',')
}

function sameBlock(a: Int32Array, aAt: number, b: Int32Array, bAt: number): boolean {
  for (let i = 0; i < BT; i++) if (a[aAt + i] !== b[bAt + i]) return false
  return true
}

export interface PrefixMatch {
  /** The deepest node matched (the root when nothing is). */
  node: RadixNode
  /** Tokens matched, a multiple of KV_BLOCK_TOKENS. */
  tokens: number
  /** Their blocks, in order. */
  blocks: number[]
}

export class RadixCache {
  private root = new RadixNode(null, new Int32Array(0), [])
  private clock = 0
  /** Tokens in the tree, and those locked by running requests. */
  private total = 0
  private locked = 0

  constructor(private readonly pool: KvBlockPool) {}

  get tokens(): number {
    return this.total
  }

  get lockedTokens(): number {
    return this.locked
  }

  /**
   * The longest cached prefix of `ids` within its first `limit` tokens, in whole blocks. An edge
   * matched part way is split there, so the match ends on a node that can be locked.
   */
  match(ids: Int32Array, limit = ids.length): PrefixMatch {
    const now = ++this.clock
    const blocks: number[] = []
    let node = this.root
    let pos = 0
    node.lastAccess = now
    while (pos + BT <= limit) {
      const child = node.children.get(keyOf(ids, pos))
      if (!child) break
      let k = 1
      const edgeBlocks = child.blocks.length
      while (k < edgeBlocks && pos + (k + 1) * BT <= limit && sameBlock(child.tokens, k * BT, ids, pos + k * BT)) k++
      const next = k < edgeBlocks ? this.split(child, k) : child
      next.lastAccess = now
      blocks.push(...next.blocks)
      pos += next.tokens.length
      node = next
      if (k < edgeBlocks) break
    }
    return { node, tokens: pos, blocks }
  }

  /** Split `node`'s edge after `k` blocks; returns the new upper node. */
  private split(node: RadixNode, k: number): RadixNode {
    const parent = node.parent!
    const upper = new RadixNode(parent, node.tokens.slice(0, k * BT), node.blocks.slice(0, k))
    upper.lockRef = node.lockRef
    upper.lastAccess = node.lastAccess
    parent.children.set(keyOf(node.tokens, 0), upper)
    node.tokens = node.tokens.slice(k * BT)
    node.blocks = node.blocks.slice(k)
    node.parent = upper
    upper.children.set(keyOf(node.tokens, 0), node)
    return upper
  }

  /**
   * Cache the KV of `ids` (a whole number of blocks) held in `blocks`. Prefixes already cached keep
   * their blocks; the rest become a new leaf, and the tree takes a reference to those blocks. Returns
   * the tokens added.
   */
  insert(ids: Int32Array, blocks: ArrayLike<number>): number {
    const m = this.match(ids)
    if (m.tokens === ids.length) return 0
    const rest = Array.from({ length: (ids.length - m.tokens) / BT }, (_, j) => blocks[m.tokens / BT + j]!)
    const leaf = new RadixNode(m.node, ids.slice(m.tokens), rest)
    leaf.lastAccess = m.node.lastAccess
    m.node.children.set(keyOf(leaf.tokens, 0), leaf)
    this.pool.share(rest)
    this.total += leaf.tokens.length
    return leaf.tokens.length
  }

  /** A request uses `node`'s prefix: it and its ancestors cannot be evicted until unlocked. */
  lock(node: RadixNode): void {
    for (let n: RadixNode | null = node; n !== null && n !== this.root; n = n.parent) {
      if (n.lockRef++ === 0) this.locked += n.tokens.length
    }
  }

  unlock(node: RadixNode): void {
    for (let n: RadixNode | null = node; n !== null && n !== this.root; n = n.parent) {
      if (--n.lockRef === 0) this.locked -= n.tokens.length
    }
  }

  /**
   * Evict unlocked leaves, least recently used first, until `tokens` are freed or none is left.
   * Returns the tokens freed and the blocks that became free (no request holds them either).
   */
  evict(tokens: number): { tokens: number; freed: number[] } {
    const leaves: RadixNode[] = []
    const visit = (n: RadixNode): void => {
      for (const c of n.children.values()) visit(c)
      if (n !== this.root && n.children.size === 0 && n.lockRef === 0) leaves.push(n)
    }
    visit(this.root)
    let done = 0
    const freed: number[] = []
    while (done < tokens && leaves.length > 0) {
      // Oldest last: few leaves go per call, so a sort per pick is cheap next to a step.
      leaves.sort((a, b) => b.lastAccess - a.lastAccess)
      const leaf = leaves.pop()!
      const parent = leaf.parent!
      parent.children.delete(keyOf(leaf.tokens, 0))
      leaf.parent = null
      freed.push(...this.pool.release(leaf.blocks))
      done += leaf.tokens.length
      this.total -= leaf.tokens.length
      if (parent !== this.root && parent.children.size === 0 && parent.lockRef === 0) leaves.push(parent)
    }
    return { tokens: done, freed }
  }

  /** Empty the tree (its KV is gone, or being dropped); returns the blocks that became free. */
  clear(): number[] {
    const freed: number[] = []
    const visit = (n: RadixNode): void => {
      for (const c of n.children.values()) visit(c)
      if (n !== this.root) freed.push(...this.pool.release(n.blocks))
    }
    visit(this.root)
    this.root = new RadixNode(null, new Int32Array(0), [])
    this.total = 0
    this.locked = 0
    return freed
  }
}
