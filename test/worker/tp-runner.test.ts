/**
 * Tensor parallelism 2 on the embedded model: two TpModelRunner ranks in one process, each with only
 * its shard's sessions, joined by the real ZeroMQ all-reduce over ipc://, driven in lockstep as the
 * scheduler drives a TP group. Their greedy tokens equal the unsharded ModelRunner's token for token,
 * and rank 0's logits equal its logits.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { ensureShards } from '../../src/model/tp/shard-cache.ts'
import type { PrefillEntry, SamplingParams } from '../../src/ipc/messages.ts'
import { ModelRunner } from '../../src/worker/runner.ts'
import { ZmqAllReduce } from '../../src/worker/tp/collective.ts'
import { TpModelRunner } from '../../src/worker/tp/runner.ts'
import { openRankSegments, segmentSessionOptions } from '../../src/worker/tp/segments.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'

const TOLERANCE = 1e-4
const STEPS = 20
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }
const create = (m: string | Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(m as string, segmentSessionOptions())

const modelDir = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const info = readModelInfo(modelDir)
const shards = await ensureShards(modelDir, 2)
const whole = await ort.InferenceSession.create(info.onnxPath)
const runDir = mkdtempSync(join(tmpdir(), 'spanserve-tp-'))
const addresses = [0, 1].map((r) => `ipc://${join(runDir, `tp${r}.sock`)}`)
const collectives = await Promise.all([0, 1].map((rank) => ZmqAllReduce.open({ rank, addresses, timeoutMs: 10_000 })))
const segments = await Promise.all([0, 1].map((r) => openRankSegments(shards.rankDir(r), create)))
const ranks = [0, 1].map((r) => new TpModelRunner(segments[r]!, collectives[r]!))
t.teardown(async () => {
  for (const c of collectives) c.close()
  await Promise.all([whole.release(), ...segments.map((s) => s.release())])
  rmSync(runDir, { recursive: true, force: true })
})

const entry = (rid: string, tokens: number[], start = 0, last = true): PrefillEntry => ({
  rid,
  trace: null,
  tokens: Int32Array.from(tokens),
  start,
  last,
  sampling: start === 0 ? greedy : null,
})

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

t.test('tp 2 over ZeroMQ decodes 4 ragged sequences exactly as tp 1 does', async (t) => {
  const reference = new ModelRunner(whole, info)
  // Ragged prompts; "b" is prefilled in two chunks, as chunked prefill sends it.
  const prompts: [string, number[][]][] = [
    ['a', [[5, 80, 200, 31]]],
    [
      'b',
      [
        [7, 7, 300, 41, 99],
        [150, 3, 600, 12],
      ],
    ],
    ['c', [[600]]],
    ['d', [[250, 251, 252, 253, 254, 255, 256]]],
  ]
  const rids = prompts.map(([rid]) => rid)
  // Each sequence's last sampled token: the decode inputs the scheduler sends every rank.
  const last = new Int32Array(rids.length)
  let worst = 0
  for (const [i, [rid, chunks]] of prompts.entries()) {
    let start = 0
    for (const [c, chunk] of chunks.entries()) {
      const e = entry(rid, chunk, start, c === chunks.length - 1)
      const [r0, r1] = await Promise.all(ranks.map((r) => r.prefill(e)))
      const ref = await reference.prefill(e)
      t.same([...r1!.tokens], [-1], 'rank 1 samples nothing')
      t.equal(r0!.tokens[0], ref.tokens[0], `${rid} chunk ${c}: rank 0 token`)
      last[i] = r0!.tokens[0]!
      worst = Math.max(worst, maxAbsDiff(r0!.logits, ref.logits))
      start += chunk.length
    }
  }

  const tpTokens: number[][] = rids.map(() => [])
  const refTokens: number[][] = rids.map(() => [])
  let inputs = last
  let allReduceMs = 0
  for (let s = 0; s < STEPS; s++) {
    const [r0, r1] = await Promise.all(ranks.map((r) => r.decode(rids, inputs)))
    const ref = await reference.decode(rids)
    t.same([...r1!.tokens], [-1, -1, -1, -1])
    t.equal(r0!.allReduces, 4, 'two all-reduces per layer')
    allReduceMs += r0!.allReduceMs
    worst = Math.max(worst, maxAbsDiff(r0!.logits, ref.logits))
    for (let i = 0; i < rids.length; i++) {
      tpTokens[i]!.push(r0!.tokens[i]!)
      refTokens[i]!.push(ref.tokens[i]!)
    }
    inputs = r0!.tokens.slice()
  }
  t.same(tpTokens, refTokens, `${STEPS} greedy steps, token for token`)
  t.ok(worst < TOLERANCE, `max |Δlogit| over prefill and decode ${worst.toExponential(2)} < ${TOLERANCE}`)
  t.ok(allReduceMs > 0, `all-reduce time is measured (${allReduceMs.toFixed(1)} ms over ${STEPS} steps)`)
  t.same(
    ranks.map((r) => r.cachedTokens()),
    [reference.cachedTokens(), reference.cachedTokens()],
    'each rank caches every token (of its KV heads)',
  )
  for (const rid of rids) for (const r of [...ranks, reference]) r.release(rid)
  t.same(
    ranks.map((r) => r.size),
    [0, 0],
  )
})

t.test('a rank that does not sample needs the decode inputs', async (t) => {
  const e = entry('x', [1, 2, 3])
  await Promise.all(ranks.map((r) => r.prefill(e)))
  await t.rejects(ranks[1]!.decode(['x']), /TP rank 1 does not sample/)
  await t.rejects(ranks[0]!.decode(['nope']), /has not finished prefill/)
  for (const r of ranks) r.clear()
})
