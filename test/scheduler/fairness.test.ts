/**
 * The fairness policy on its own (src/scheduler/fairness.ts): counters and their lift, the fair
 * share that lets a client past a full batch, the split of a step's slots, and the queue's pick.
 */
import t from 'tap'
import { VirtualTokenCounter, W_IN, W_OUT } from '../../src/scheduler/fairness.ts'
import { WaitingQueue } from '../../src/scheduler/queue.ts'
import type { SchedRequest } from '../../src/scheduler/request.ts'

t.test('counters: prompt tokens at admission, generated tokens as they come', async (t) => {
  const v = new VirtualTokenCounter()
  v.enter('a')
  v.admitted('a', 10)
  v.generated('a', 3)
  t.equal(v.counter('a'), 10 * W_IN + 3 * W_OUT)
  t.equal(v.held('a'), 1)
  v.leave('a', true)
  t.equal(v.held('a'), 0)
  t.equal(v.activeClients, 0)
})

t.test('a client that becomes active is lifted to the least active counter: idle time is not banked', async (t) => {
  const v = new VirtualTokenCounter()
  v.enter('a')
  v.admitted('a', 100)
  v.enter('b')
  t.equal(v.counter('b'), 100, 'b starts level with a, not at 0')
  v.enter('b')
  v.generated('b', 10)
  t.equal(v.counter('b'), 120, 'a second live sequence does not lift again')
  v.leave('b', false)
  v.leave('b', false)
  v.leave('a', true)
  v.enter('c')
  t.equal(v.counter('c'), 100, 'with nobody active: lifted to the last client that went idle')
  v.enter('b')
  t.equal(v.counter('b'), 120, 'never lowered')
})

t.test('past a full batch only a client below its fair share is admitted, up to twice the batch', async (t) => {
  const v = new VirtualTokenCounter()
  v.enter('a')
  for (let i = 0; i < 4; i++) v.admitted('a', 1)
  t.ok(v.mayAdmit('a', 3, 4), 'below the batch size: anyone')
  t.notOk(v.mayAdmit('a', 4, 4), 'one client: the batch size is the limit')
  v.enter('b')
  t.ok(v.mayAdmit('b', 4, 4), 'b holds 0 of its share of 2')
  t.notOk(v.mayAdmit('a', 4, 4), 'a holds more than its share')
  v.admitted('b', 1)
  v.admitted('b', 1)
  t.notOk(v.mayAdmit('b', 6, 4), 'b at its share')
  t.notOk(v.mayAdmit('b', 8, 4), 'never beyond twice the batch')
})

t.test("a step's slots: max-min fair between clients, the least counter first, earliest first within a client", async (t) => {
  const v = new VirtualTokenCounter()
  const seqs = [...['a1', 'a2', 'a3', 'a4', 'a5'].map((rid) => ({ rid, client: 'a' })), { rid: 'b1', client: 'b' }, { rid: 'c1', client: 'c' }, { rid: 'c2', client: 'c' }]
  for (const s of seqs) v.enter(s.client)
  v.admitted('a', 50)
  v.admitted('c', 10)
  const runs = v.allot(seqs, 4)
  t.same([...runs].map((s) => s.rid).sort(), ['a1', 'b1', 'c1', 'c2'], 'b and c take what they need up to their share, a the rest')
  const two = v.allot(seqs, 2)
  t.same([...two].map((s) => s.rid).sort(), ['b1', 'c1'], 'fewer slots than clients: the least counters')
})

t.test('the queue: the least counter first, first come first served within a client', async (t) => {
  const v = new VirtualTokenCounter()
  const q = new WaitingQueue(16)
  const req = (rid: string, client?: string) => ({ rid, client }) as unknown as SchedRequest
  for (const r of [req('a1', 'a'), req('a2', 'a'), req('b1', 'b'), req('b2', 'b')]) {
    q.push(r)
    v.enter(r.client!)
  }
  v.admitted('a', 5)
  const all = () => true
  t.equal(q.next(v, all)?.rid, 'b1', 'b has the lesser counter')
  t.equal(q.next(v, (c) => c !== 'b')?.rid, 'a1', 'only eligible clients')
  q.take(q.next(v, all)!)
  t.equal(q.next(v, all)?.rid, 'b2')
  const one = new WaitingQueue(4)
  one.push(req('x'))
  one.push(req('y'))
  const anon = new VirtualTokenCounter()
  anon.enter('')
  t.equal(one.next(anon, all)?.rid, 'x', 'requests with no client: first come, first served')
})
