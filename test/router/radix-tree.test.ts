/** The router's approximate radix tree: prefix matches, edge splits, its size in characters, LRU eviction. */
import t from 'tap'
import { RadixTree } from '../../src/router/radix-tree.ts'

t.test('matches the longest prefix held, across split edges', async (t) => {
  const tree = new RadixTree(1000)
  t.equal(tree.match('anything'), 0, 'an empty tree matches nothing')
  tree.insert('hello world')
  t.equal(tree.match('hello world'), 11)
  t.equal(tree.match('hello world, again'), 11, 'a longer text matches what is held')
  t.equal(tree.match('hello there'), 6, 'a match may end inside an edge')
  t.equal(tree.match('help'), 3)
  t.equal(tree.match('xyz'), 0)
  tree.insert('hello there')
  t.equal(tree.size, 'hello world'.length + 'there'.length, 'the shared prefix is held once')
  t.equal(tree.match('hello there!'), 11)
  t.equal(tree.match('hello world'), 11, 'the split kept the first text whole')
  tree.insert('hello')
  t.equal(tree.size, 16, 'a text that ends at a split adds nothing')
  tree.insert('')
  t.equal(tree.size, 16)
})

t.test('bounded in characters: the least recently used leaves go first', async (t) => {
  const tree = new RadixTree(30)
  tree.insert('aaaaaaaaaa') // 10
  tree.insert('bbbbbbbbbb') // 20
  tree.insert('cccccccccc') // 30
  t.equal(tree.size, 30)
  tree.insert('aaaaaaaaaa') // a becomes the most recent
  tree.insert('dddddddddd') // 40 > 30: b, the least recent, goes
  t.equal(tree.size, 30)
  t.equal(tree.match('bbbbbbbbbb'), 0, 'the least recently used text was evicted')
  t.equal(tree.match('aaaaaaaaaa'), 10, 'a text used again stays')
  t.equal(tree.match('cccccccccc'), 10)
  t.equal(tree.match('dddddddddd'), 10)
})

t.test('eviction takes leaves, never a prefix still leading to a newer text', async (t) => {
  const tree = new RadixTree(25)
  tree.insert('system prompt: turn one') // 23
  tree.insert('system prompt: turn two') // shares 20 ("system prompt: turn "), adds 3 → 26 > 25
  // The older leaf "one" goes; the shared prefix and the newer "two" stay.
  t.equal(tree.size, 23)
  t.equal(tree.match('system prompt: turn two'), 23)
  t.equal(tree.match('system prompt: turn one'), 20)
})

t.test('a text over the bound evicts itself down to the bound: the tree never holds more', async (t) => {
  const tree = new RadixTree(8)
  tree.insert('x'.repeat(20))
  t.ok(tree.size <= 8)
  tree.insert('abc')
  t.ok(tree.size <= 8)
  t.equal(tree.match('abc'), 3)
})

t.test('many texts: always within the bound', async (t) => {
  const tree = new RadixTree(500)
  const texts: string[] = []
  let largest = 0
  for (let i = 0; i < 300; i++) {
    const text = `conversation ${i % 17}: ` + 'turn '.repeat(i % 9) + String(i)
    texts.push(text)
    tree.insert(text)
    largest = Math.max(largest, tree.size)
  }
  t.ok(largest <= 500 && largest > 400, `the largest size seen, ${largest}, is near and within the bound`)
  const last = texts.at(-1)!
  t.equal(tree.match(last), last.length, 'the most recent text is held whole')
})
