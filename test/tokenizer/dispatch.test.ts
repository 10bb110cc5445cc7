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
