/**
 * KV blocks in the worker, on the real ONNX Runtime sessions of the embedded model: a sequence started
 * on blocks another one filled (a cached prefix, at a block boundary) computes what a full prefill
 * computes, and decodes the same greedy tokens, without running the prefix again; freed blocks are
 * gone, and a chunk whose prefix is not held cannot start. Under tensor parallelism 2 each rank holds
 * its shard of the same blocks and the ranks agree with the unsharded runner.
 */
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { ensureShards } from '../../src/model/tp/shard-cache.ts'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import type { PrefillEntry, SamplingParams } from '../../src/ipc/messages.ts'
import { ModelRunner } from '../../src/worker/runner.ts'
import { ZmqAllReduce } from '../../src/worker/tp/collective.ts'
import { KvBlockStore } from '../../src/worker/kv-cache.ts'
import { TpModelRunner } from '../../src/worker/tp/runner.ts'
import { openRankSegments, segmentSessionOptions } from '../../src/worker/tp/segments.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'

const TOLERANCE = 1e-3
const STEPS = 12
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }
const modelDir = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const info = readModelInfo(modelDir)
const whole = await ort.InferenceSession.create(info.onnxPath)
t.teardown(() => whole.release())

const PREFIX = Array.from({ length: 2 * BT }, (_, i) => (i * 37 + 11) % 500)
const A = [...PREFIX, 41, 42, 43]
const B = [...PREFIX, 300, 7, 8, 9, 10]

interface Runner {
  prefill(e: PrefillEntry): Promise<{ tokens: Int32Array; logits: Float32Array }>
  decode(rids: readonly string[], inputs?: Int32Array): Promise<{ tokens: Int32Array }>
  release(rid: string): void
  freeBlocks(ids: Iterable<number>): void
  canPrefill(e: PrefillEntry): boolean
  heldBlocks(): number
}

const first = (rid: string, tokens: number[], start: number, blocks: number[]): PrefillEntry => ({
  rid,
  trace: null,
  tokens: Int32Array.from(tokens.slice(start)),
  start,
  last: true,
  sampling: greedy,
  blocks: Int32Array.from(blocks),
})

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

/** Greedy tokens of `prompt` prefilled from scratch (own blocks), then STEPS decode steps. */
async function fresh(r: Runner, rid: string, prompt: number[]): Promise<{ tokens: number[]; logits: Float32Array }> {
  const p = await r.prefill({ rid, trace: null, tokens: Int32Array.from(prompt), start: 0, last: true, sampling: greedy })
  const tokens = [p.tokens[0]!]
  const logits = p.logits.slice()
  for (let s = 0; s < STEPS; s++) tokens.push((await r.decode([rid])).tokens[0]!)
  r.release(rid)
  return { tokens, logits }
}

/** `rid`'s prefill `p` and STEPS greedy decode steps give what a fresh sequence gave; then it leaves. */
async function matchesFresh(t: Test, r: Runner, rid: string, p: { tokens: Int32Array; logits: Float32Array }, want: { tokens: number[]; logits: Float32Array }): Promise<void> {
  t.ok(maxAbsDiff(p.logits, want.logits) < TOLERANCE, "the last prompt position's logits match a full prefill")
  const tokens = [p.tokens[0]!]
  for (let s = 0; s < STEPS; s++) tokens.push((await r.decode([rid])).tokens[0]!)
  t.same(tokens, want.tokens, 'greedy tokens token for token')
  r.release(rid)
}

t.test('a sequence started on cached blocks equals a full prefill', async (t) => {
  const r = new ModelRunner(whole, info)
  const want = await fresh(r, 'fresh', B)
  t.equal(r.heldBlocks(), 0, "a sequence's own blocks go with it")
  // a fills blocks 0-2 (its prompt) and decodes; its first two blocks then hold PREFIX.
  await r.prefill(first('a', A, 0, [0, 1, 2]))
  for (let s = 0; s < 3; s++) await r.decode(['a'])
  r.release('a')
  r.freeBlocks([2])
  t.equal(r.heldBlocks(), 2, 'the cached blocks stay after a leaves')
  const b = first('b', B, 2 * BT, [0, 1, 5, 6])
  t.ok(r.canPrefill(b))
  await matchesFresh(t, r, 'b', await r.prefill(b), want)
  r.freeBlocks([0, 1, 5, 6])
  t.equal(r.heldBlocks(), 0)
  t.notOk(r.canPrefill(first('c', B, 2 * BT, [0, 1, 5, 6])), 'a prefix no longer held cannot start')
  t.notOk(r.canPrefill(first('c', B, BT / 2, [0, 1, 5, 6])), 'nor one off a block boundary')
})

t.test("blocks of any id, in slabs or freed, trimmed and given out again, hold only their sequence's KV", async (t) => {
  const r = new ModelRunner(whole, info)
  const want = await fresh(r, 'fresh', B)
  // x writes blocks on both sides of a slab boundary (64 blocks a slab), then they are freed.
  await r.prefill(first('x', A, 0, [63, 64, 129]))
  for (let s = 0; s < 3; s++) await r.decode(['x'])
  r.release('x')
  r.freeBlocks([63, 64, 129])
  t.equal(r.heldBlocks(), 0)
  // Idle now: the worker gives the slabs back (step.ts); y's blocks are in fresh ones.
  r.trim()
  // y gets the same ids again, in another order: what x left in them is never read.
  await matchesFresh(t, r, 'y', await r.prefill(first('y', B, 0, [64, 63, 129, 300])), want)
  r.freeBlocks([64, 63, 129, 300])
  t.equal(r.heldBlocks(), 0)
})

t.test('trimmed when idle: slabs with no block held are given back, the cached prefix stays, and freed slabs fill again', async (t) => {
  const store = new KvBlockStore({ numLayers: info.numLayers, numKvHeads: info.numKvHeads, headDim: info.headDim })
  // Slabs 0, 1 and 3 written; slab 1's block stays held (a cached prefix, say).
  for (const id of [0, 5, 70, 200]) store.data(id).fill(1, store.offset(id), store.offset(id) + 8)
  store.free([0, 5, 200])
  t.equal(store.trim(), 2, 'slabs 0 and 3 held nothing')
  t.ok(store.has(70) && store.data(70)[store.offset(70)] === 1, 'the held block keeps its data')
  t.equal(store.trim(), 0, 'nothing more to give back')
  store.data(5)
  t.ok(store.has(5), 'a block of a trimmed slab is written again')
})

t.test('tensor parallel 2: each rank holds its shard of the blocks, and the ranks agree', async (t) => {
  const shards = await ensureShards(modelDir, 2)
  const runDir = mkdtempSync(join(tmpdir(), 'spanserve-kvb-'))
  const addresses = [0, 1].map((r) => `ipc://${join(runDir, `tp${r}.sock`)}`)
  const collectives = await Promise.all([0, 1].map((rank) => ZmqAllReduce.open({ rank, addresses, timeoutMs: 10_000 })))
  const segments = await Promise.all([0, 1].map((r) => openRankSegments(shards.rankDir(r), (m) => ort.InferenceSession.create(m as string, segmentSessionOptions()))))
  t.teardown(async () => {
    for (const c of collectives) c.close()
    await Promise.all(segments.map((s) => s.release()))
    rmSync(runDir, { recursive: true, force: true })
  })
  const ranks = [0, 1].map((r) => new TpModelRunner(segments[r]!, collectives[r]!))
  const want = await fresh(new ModelRunner(whole, info), 'fresh', B)
  const both = <T>(f: (r: TpModelRunner) => Promise<T>) => Promise.all(ranks.map(f))
  await both((r) => r.prefill(first('a', A, 0, [0, 1, 2])))
  await both(async (r) => {
    r.release('a')
    r.freeBlocks([2])
  })
  t.same(
    ranks.map((r) => r.heldBlocks()),
    [2, 2],
    'both ranks keep the cached blocks',
  )
  const [p0] = await both((r) => r.prefill(first('b', B, 2 * BT, [0, 1, 5, 6])))
  t.ok(maxAbsDiff(p0!.logits, want.logits) < TOLERANCE, "rank 0's logits match the unsharded full prefill")
  const tokens = [p0!.tokens[0]!]
  for (let s = 0; s < STEPS; s++) {
    const inputs = Int32Array.of(tokens.at(-1)!)
    const [d0] = await both((r) => r.decode(['b'], inputs))
    tokens.push(d0!.tokens[0]!)
  }
  t.same(tokens, want.tokens, "greedy tokens equal the unsharded runner's")
})
