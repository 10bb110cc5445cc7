import t from 'tap'
import { DpDispatcher } from '../../src/tokenizer/dispatch.ts'

t.test('least outstanding tokens first, ties round robin', async (t) => {
  const d = new DpDispatcher(3)
  t.same([d.pick(10), d.pick(10), d.pick(10)], [0, 1, 2], 'equal load: round robin')
  d.done(1, 10)
  t.equal(d.pick(5), 1, 'the group that finished work is least loaded')
  t.equal(d.pick(100), 1, 'still least loaded (5 < 10)')
  t.equal(d.pick(1), 2, 'groups 0 and 2 tie at 10: round robin continues after group 1')
})

t.test('cache-aware: the group holding the longest prefix, unless the load is imbalanced', async (t) => {
  const d = new DpDispatcher(2, { capBlocks: 1000, absThreshold: 100, relThreshold: 1.5 })
  const sys = Array.from({ length: 40 }, (_, i) => i + 1)
  const a = [...sys, 500, 501]
  t.same(d.pickFor(a, 10), { dp: 0, match: 0 }, 'no match: least loaded (round robin)')
  t.same(d.pickFor([900, 901], 10), { dp: 1, match: 0 })
  t.same(d.pickFor([...sys, 7, 7, 7], 10), { dp: 0, match: 32 }, "the shared prefix's two whole blocks are on group 0")
  d.done(0, 20)
  d.done(1, 10)
  t.same(d.pickFor([...sys.slice(0, 16), 3], 10), { dp: 0, match: 16 }, 'a shorter match still counts')
  // Group 0 now carries 1000 tokens more than group 1: past both thresholds.
  d.pickFor(a, 1000)
  t.same(d.pickFor(a, 10), { dp: 1, match: 0 }, 'imbalanced: least loaded, whatever is cached')
  d.disable(0)
  d.enable(0)
  d.done(0, 2000)
  t.equal(d.pickFor(a, 10).match, 32, 'group 1 has it now too')
  d.disable(1)
  t.same(d.pickFor(a, 10), { dp: 0, match: 0 }, 'a group that went down forgets what it had')
})
