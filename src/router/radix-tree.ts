/**
 * The approximate radix tree of one instance: the prompt text the router has sent it, as SGLang's
 * router keeps it (sgl-router, policies/tree.rs): characters, not tokens, so that routing needs no
 * tokenizer; sized in characters; least recently used leaves evicted first. "Approximate" because
 * the instance's own prefix cache evicts on its own schedule: a match here is a likely hit there.
 *
 * LRU without a scan: every node sits in one insertion-ordered Map, and a touched path is moved to
 * its end from the leaf up, so a node always comes after all of its descendants. The first node in
 * the Map is then always a leaf, the least recently used one: eviction is O(1) a node.
 */

interface Node {
  /** The characters on the edge into this node (empty only at the root). */
  text: string
  parent: Node | null
  /** By the first character of the child's text. */
  children: Map<string, Node>
}

export class RadixTree {
  private readonly root: Node = { text: '', parent: null, children: new Map() }
  /** Every node but the root, least recently used first (see the file comment). */
  private readonly lru = new Map<Node, true>()
  private chars = 0

  /** @param maxChars the most characters the tree holds; past it, LRU leaves go. */
  constructor(private readonly maxChars: number) {}

  /** Characters held (the sum of every edge's text). */
  get size(): number {
    return this.chars
  }

  /** How many leading characters of `text` the tree holds. Reads only: a match is not a use. */
  match(text: string): number {
    let node = this.root
    let i = 0
    while (i < text.length) {
      const child = node.children.get(text[i]!)
      if (child === undefined) break
      const shared = sharedPrefix(child.text, text, i)
      i += shared
      if (shared < child.text.length) break
      node = child
    }
    return i
  }

  /** Records `text` as sent to this instance (its whole path becomes the most recent), then evicts down to the bound. */
  insert(text: string): void {
    let node = this.root
    let i = 0
    while (i < text.length) {
      const first = text[i]!
      const child = node.children.get(first)
      if (child === undefined) {
        const leaf: Node = { text: text.slice(i), parent: node, children: new Map() }
        node.children.set(first, leaf)
        this.chars += leaf.text.length
        node = leaf
        break
      }
      const shared = sharedPrefix(child.text, text, i)
      if (shared < child.text.length) {
        // Split the edge: node → middle (the shared part) → child (the rest of its text).
        const middle: Node = { text: child.text.slice(0, shared), parent: node, children: new Map() }
        child.text = child.text.slice(shared)
        child.parent = middle
        middle.children.set(child.text[0]!, child)
        node.children.set(first, middle)
        this.lru.set(middle, true)
        node = middle
        i += shared
        continue
      }
      node = child
      i += shared
    }
    this.touch(node)
    this.evict()
  }

  /** Moves the path from `node` up to the root to the most recent end, leaf first. */
  private touch(node: Node): void {
    for (let n: Node | null = node; n !== null && n !== this.root; n = n.parent) {
      this.lru.delete(n)
      this.lru.set(n, true)
    }
  }

  private evict(): void {
    while (this.chars > this.maxChars) {
      const oldest = this.lru.keys().next()
      if (oldest.done) return
      const leaf = oldest.value
      this.lru.delete(leaf)
      leaf.parent!.children.delete(leaf.text[0]!)
      this.chars -= leaf.text.length
    }
  }
}

/** How many characters `edge` shares with `text` from `start`. */
function sharedPrefix(edge: string, text: string, start: number): number {
  const n = Math.min(edge.length, text.length - start)
  let k = 0
  while (k < n && edge.charCodeAt(k) === text.charCodeAt(start + k)) k++
  return k
}
