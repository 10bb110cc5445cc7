/**
 * Outbox → Inbox over real ZeroMQ sockets: messages arrive in order; the send queue is bounded, its
 * overflow refused, counted and reported once; every request message leaves with the sender's trace
 * context, filled in by the channel.
 */
import t, { type Test } from 'tap'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Inbox, Outbox, onSendQueueFull, type SendQueueFull } from '../../src/ipc/channel.ts'
import type { AbortReq, ForwardBatch, GenerateReqInput, Message } from '../../src/ipc/messages.ts'
import * as tracing from '../../src/tracing/index.ts'
import { tracedSession } from '../tracing/fixtures/harness.ts'

const dir = mkdtempSync(join(tmpdir(), 'spanserve-channel-'))
let n = 0
const address = () => `ipc://${join(dir, `sock-${n++}`)}`

/** An Inbox that collects what it receives; `next(k)` waits for the k-th message. */
async function collector(t: Test, addr: string) {
  const got: Message[] = []
  const bad: unknown[] = []
  let wake: (() => void) | null = null
  const push = (m: Message) => {
    got.push(m)
    wake?.()
  }
  const inbox = new Inbox(addr, { abort: push, generate: push, forward: push }, (err) => bad.push(err), null)
  await inbox.bind()
  t.teardown(() => inbox.close())
  return {
    got,
    bad,
    async waitFor(count: number): Promise<void> {
      while (got.length < count) await new Promise<void>((r) => (wake = r))
    },
  }
}

const abort = (i: number): AbortReq => ({ type: 'abort', rid: `r${i}`, reason: String(i) })

t.test('messages arrive in the order posted', async (t) => {
  const addr = address()
  const inbox = await collector(t, addr)
  const out = new Outbox(addr, null)
  t.teardown(() => out.close())
  for (let i = 0; i < 500; i++) t.equal(out.post(abort(i)), true)
  await inbox.waitFor(500)
  t.same(
    inbox.got.map((m) => (m as AbortReq).rid),
    Array.from({ length: 500 }, (_, i) => `r${i}`),
  )
  t.same(inbox.bad, [])
})

t.test('a full send queue refuses, counts and reports once; it takes messages again once drained', async (t) => {
  const reports: SendQueueFull[] = []
  onSendQueueFull((e) => reports.push(e))
  // Nobody is bound yet: ZeroMQ holds nothing for an absent peer (immediate), so the queue fills.
  const addr = address()
  const out = new Outbox(addr, null, 8)
  t.teardown(() => out.close())
  // The first goes straight to the socket's (waiting) send; eight queue behind it.
  for (let i = 0; i < 9; i++) t.equal(out.post(abort(i)), true, `message ${i} taken`)
  t.equal(out.post(abort(9)), false, 'the tenth is refused')
  t.equal(out.post(abort(10)), false, 'and the eleventh')
  t.equal(out.dropped, 2, 'both counted')
  t.same(reports, [{ address: addr, type: 'abort', capacity: 8 }], 'reported once, naming the peer and the message')

  const inbox = await collector(t, addr)
  await inbox.waitFor(9)
  t.same(
    inbox.got.map((m) => (m as AbortReq).rid),
    ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8'],
    'what was taken arrives, in order',
  )
  t.equal(out.post(abort(11)), true, 'drained: it takes messages again')
  await inbox.waitFor(10)
  t.equal((inbox.got[9] as AbortReq).rid, 'r11')
  t.equal(reports.length, 1, 'nothing more to report')
})

t.test("request messages leave with the sender's trace context, filled in by the channel", async (t) => {
  await tracedSession(t)
  const addr = address()
  const inbox = await collector(t, addr)
  const out = new Outbox(addr, null)
  t.teardown(() => out.close())

  tracing.reqStart('traced', null, { root: true })
  tracing.sliceStart('traced', 'dispatch', { level: 1 })
  const sent = tracing.getPropagateContext('traced')!
  t.ok(sent, 'the sender has a context for the request')
  const sampling = { temperature: 0, topP: 1, topK: 0, seed: null }
  const generate = (rid: string): GenerateReqInput => ({
    type: 'generate',
    rid,
    trace: null,
    text: 'hi',
    inputIds: null,
    messages: null,
    sampling,
    maxTokens: 1,
    ignoreEos: false,
    stop: [],
    arrivalMs: 0,
  })
  const forward: ForwardBatch = {
    type: 'forward',
    step: 1,
    decode: [],
    decodeTokens: new Int32Array(0),
    decodeSteps: 1,
    release: [],
    prefill: [
      { rid: 'traced', trace: null, tokens: Int32Array.of(1), start: 0, last: false, sampling },
      { rid: 'traced', trace: null, tokens: Int32Array.of(2), start: 1, last: true, sampling: null },
    ],
  }
  const upstream = { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' }
  out.post(generate('traced'))
  out.post({ ...generate('untraced'), trace: upstream })
  out.post(forward)
  await inbox.waitFor(3)
  const [a, b, c] = inbox.got as [GenerateReqInput, GenerateReqInput, ForwardBatch]
  t.same(a.trace, sent, "a request traced here carries this process's context")
  t.same(b.trace, upstream, 'one not traced here passes its carrier on as it came')
  t.same(c.prefill[0]!.trace, sent, 'a first chunk (with its sampling) carries the context')
  t.equal(c.prefill[1]!.trace, null, 'a later chunk carries none')
  tracing.reqFinish('traced')
})
