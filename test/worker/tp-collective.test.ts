/**
 * The ZeroMQ all-reduce of a TP group (src/worker/tp/collective.ts): three ranks in one process over
 * ipc://. Every rank gets the same bits, the sum in rank order, however the partials arrive; calls
 * that do not match across ranks, and peers that stay silent, fail with errors that say so.
 */
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ZmqAllReduce } from '../../src/worker/tp/collective.ts'

const SIZE = 3

async function group(t: Test, timeoutMs = 5_000): Promise<ZmqAllReduce[]> {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-ar-'))
  const addresses = Array.from({ length: SIZE }, (_, r) => `ipc://${join(dir, `r${r}.sock`)}`)
  const ranks = await Promise.all(addresses.map((_, rank) => ZmqAllReduce.open({ rank, addresses, timeoutMs })))
  t.teardown(() => {
    for (const r of ranks) r.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return ranks
}

/** Values whose float32 sum depends on the order of addition. */
function partial(rank: number, step: number, seq: number, n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.fround(((rank + 1) * 1e7 * Math.sin(i + step * 7 + seq)) / (i + 1) + 0.1 * rank))
}

t.test('every rank gets the bit-identical sum in rank order, whatever the arrival order', async (t) => {
  const ranks = await group(t)
  const n = 384 * 3
  for (let step = 0; step < 5; step++) {
    const results = await Promise.all(
      ranks.map(async (r) => {
        const out: Float32Array[] = []
        for (let seq = 0; seq < 4; seq++) {
          // Ranks run ahead of one another, so a later call's partial often arrives first.
          await sleep(Math.floor(Math.random() * 4))
          out.push(await r.allReduce(step, seq, partial(r.rank, step, seq, n)))
        }
        return out
      }),
    )
    for (let seq = 0; seq < 4; seq++) {
      const expected = Float32Array.from(partial(0, step, seq, n))
      for (let r = 1; r < SIZE; r++) {
        const p = partial(r, step, seq, n)
        for (let i = 0; i < n; i++) expected[i]! += p[i]!
      }
      for (let r = 0; r < SIZE; r++) {
        if (!Buffer.from(results[r]![seq]!.buffer).equals(Buffer.from(expected.buffer))) t.fail(`rank ${r} step ${step} seq ${seq} differs`)
      }
    }
  }
  t.equal(ranks[0]!.stats.calls, 20)
  t.ok(ranks[0]!.stats.totalMs > 0)
  t.equal(ranks[0]!.stats.bytesSent, 20 * n * 4 * (SIZE - 1))
  t.pass('bit-identical on all ranks')
})

t.test('ranks out of lockstep are told so', async (t) => {
  const ranks = await group(t)
  const calls = ranks.map((r) => r.allReduce(0, 0, new Float32Array(r.rank === 2 ? 8 : 4)))
  const settled = await Promise.allSettled(calls)
  t.ok(
    settled.every((s) => s.status === 'rejected' && /out of lockstep/.test(String(s.reason))),
    'every rank rejects',
  )
})

t.test('a silent peer fails the call after the timeout, naming it', async (t) => {
  const ranks = await group(t, 200)
  const calls = [0, 1].map((r) => ranks[r]!.allReduce(0, 0, new Float32Array(4)))
  await t.rejects(calls[0]!, /no partial from rank 2 after 200 ms/)
  await t.rejects(calls[1]!, /no partial from rank 2/)
})

t.test('one rank: the data itself, no sockets', async (t) => {
  const one = await ZmqAllReduce.open({ rank: 0, addresses: ['ipc://unused'] })
  const data = Float32Array.of(1, 2)
  t.equal(await one.allReduce(0, 0, data), data)
  one.close()
})
