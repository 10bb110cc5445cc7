/** SGLang's cache_aware policy on per-instance trees (cache hits, misses, load out of balance), and round_robin. */
import t from 'tap'
import { parseRouterConfig } from '../../src/router/config.ts'
import { choose, isImbalanced, type Candidate } from '../../src/router/policy.ts'
import { RadixTree } from '../../src/router/radix-tree.ts'

const OPTS = { cacheThreshold: 0.3, balanceAbsThreshold: 64, balanceRelThreshold: 1.5 }

interface Named extends Candidate {
  name: string
}

function instances(...names: string[]): Named[] {
  return names.map((name, i) => ({ name, load: 0, tree: new RadixTree(1 << 20), lastPicked: i }))
}

t.test('imbalance needs both thresholds, as SGLang has it', async (t) => {
  t.equal(isImbalanced([0, 64], OPTS), false, 'a difference of 64 is not over 64')
  t.equal(isImbalanced([0, 65], OPTS), true, 'over 64, and 65 > 0 × 1.5')
  t.equal(isImbalanced([200, 265], OPTS), false, 'over 64 apart but 265 < 200 × 1.5')
  t.equal(isImbalanced([100, 165], OPTS), true)
  t.equal(isImbalanced([100], OPTS), false, 'one instance is never out of balance')
})

t.test('a prefix held above the threshold wins: the conversation stays on its instance', async (t) => {
  const [a, b, c] = instances('a', 'b', 'c')
  const all = [a!, b!, c!]
  b!.tree.insert('You are a helpful assistant.\nWhat is the capital of France?')
  const turn2 = 'You are a helpful assistant.\nWhat is the capital of France?\nParis.\nAnd of Spain?'
  const choice = choose(all, turn2, OPTS)
  t.equal(choice.instance.name, 'b')
  t.equal(choice.decision, 'cache_hit')
  t.ok(choice.matchRate > 0.3 && choice.matchRate < 1)
  // The busier instance still wins while the load is within the thresholds.
  b!.load = 60
  t.equal(choose(all, turn2, OPTS).instance.name, 'b', 'a load 60 over the others is within balance')
})

t.test('a match at or below the threshold is a miss: the least loaded, then the smallest tree', async (t) => {
  const [a, b, c] = instances('a', 'b', 'c')
  const all = [a!, b!, c!]
  a!.tree.insert('abc' + 'x'.repeat(97))
  const text = 'abc' + 'y'.repeat(7) // 3 of 10 characters match: 0.3 is not above 0.3
  let choice = choose(all, text, OPTS)
  t.equal(choice.decision, 'cache_miss')
  t.not(choice.instance.name, 'a', 'all idle: not the instance with the biggest tree')
  b!.load = 1
  choice = choose(all, text, OPTS)
  t.equal(choice.instance.name, 'c', 'the least loaded')
  c!.load = 2
  t.equal(choose(all, text, OPTS).instance.name, 'a', 'load before tree size')
})

t.test('idle and nothing matches: ties go to the smallest tree, then the least recently picked', async (t) => {
  const [a, b, c] = instances('a', 'b', 'c')
  a!.lastPicked = 5
  b!.lastPicked = 3
  c!.lastPicked = 4
  t.equal(choose([a!, b!, c!], 'new conversation', OPTS).instance.name, 'b')
  b!.tree.insert('something else entirely')
  t.equal(choose([a!, b!, c!], 'new conversation', OPTS).instance.name, 'c')
  t.equal(choose([a!, b!, c!], '', OPTS).decision, 'cache_miss', 'an empty prompt is a miss')
})

t.test('load out of balance: the least loaded wins even over a full match', async (t) => {
  const [a, b] = instances('a', 'b')
  a!.tree.insert('the same long system prompt, every time')
  a!.load = 100
  b!.load = 10
  const choice = choose([a!, b!], 'the same long system prompt, every time', OPTS)
  t.equal(choice.instance.name, 'b')
  t.equal(choice.decision, 'load_balanced')
  t.equal(choice.matchRate, 0, "the match rate reported is the chosen instance's")
  a!.load = 14 // 14 - 10 is within 64: the cache decides again
  t.equal(choose([a!, b!], 'the same long system prompt, every time', OPTS).instance.name, 'a')
})

t.test('equal matches go to the lighter instance', async (t) => {
  const [a, b] = instances('a', 'b')
  a!.tree.insert('shared prefix here')
  b!.tree.insert('shared prefix here')
  a!.load = 3
  t.equal(choose([a!, b!], 'shared prefix here and more', OPTS).instance.name, 'b')
})

t.test('no candidate is a caller error', async (t) => {
  t.throws(() => choose([], 'x', OPTS))
})

t.test('round_robin: each healthy instance in turn, whatever the cache and the load', async (t) => {
  const RR = { ...OPTS, policy: 'round_robin' as const }
  const [a, b, c] = instances('a', 'b', 'c')
  const all = [a!, b!, c!]
  a!.tree.insert('a conversation held by a')
  a!.load = 5
  let picks = 10
  const order: string[] = []
  for (let i = 0; i < 6; i++) {
    const choice = choose(all, 'a conversation held by a, next turn', RR)
    t.equal(choice.decision, 'round_robin')
    choice.instance.lastPicked = ++picks
    order.push(choice.instance.name)
  }
  t.same(order, ['a', 'b', 'c', 'a', 'b', 'c'])
  // An instance that is down is not offered: the turn passes to the others.
  const choice = choose([b!, c!], 'x', RR)
  t.equal(choice.instance.name, 'b')
  t.equal(choose(all, 'a conversation held by a, next turn', OPTS).instance.name, 'a', 'without the option: cache_aware')
})

t.test('--policy takes SGLang names, cache_aware by default', async (t) => {
  const args = ['--instance', 'http://127.0.0.1:8000']
  t.equal(parseRouterConfig(args, {}).config.policy, 'cache_aware')
  t.equal(parseRouterConfig([...args, '--policy', 'round_robin'], {}).config.policy, 'round_robin')
  t.equal(parseRouterConfig(args, { SPANSERVE_ROUTER_POLICY: 'round_robin' }).config.policy, 'round_robin')
  t.throws(() => parseRouterConfig([...args, '--policy', 'random'], {}), /--policy: expected one of cache_aware, round_robin/)
})
