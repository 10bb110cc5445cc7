// Tensor-parallel shards (src/model/tp): the segment graphs of every rank, chained with a plain
// TypeScript all-reduce, compute the unsharded model's logits; sizes that do not divide the heads,
// and graphs spanserve did not build, are refused clearly; each rank's files hold 1/T of the layers.

import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import onnxProto from 'onnx-proto'
import { composeModel, ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { buildLlamaOnnx } from '../../src/model/onnx-graph.ts'
import { randomLlamaWeights } from '../../src/model/random-weights.ts'
import type { LlamaSpec, LlamaWeights } from '../../src/model/spec.ts'
import { TpConfigError, TpModelFormatError } from '../../src/model/tp/errors.ts'
import { loadLlamaWeights, readLlamaSpec } from '../../src/model/tp/load-weights.ts'
import { SEGMENT_IO as IO } from '../../src/model/tp/segment-graph.ts'
import { ensureShards } from '../../src/model/tp/shard-cache.ts'
import { shardModel } from '../../src/model/tp/shard.ts'
import { openRankShard, type RankSegments } from '../../src/worker/tp/segments.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'
import { emptyPast, int64, maxAbsDiff, presentAsPast, sequenceFeeds } from './ort-helpers.ts'

const TOLERANCE = 1e-4
const create = (m: string | Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(m as Uint8Array)

/** One sequence through every rank's segments, the partials summed in rank order between them. */
class SegmentedModel {
  private past: ort.Tensor[][]
  constructor(
    readonly spec: LlamaSpec,
    readonly ranks: RankSegments[],
  ) {
    this.past = ranks.map((r) => Array.from({ length: spec.numLayers * 2 }, () => new ort.Tensor('float32', new Float32Array(0), [1, r.manifest.plan.kvHeads.count, 0, spec.headDim])))
  }

  /** Logits [S, vocab] of the chunk `tokens` at positions start..start+S-1. */
  async run(tokens: number[], start: number): Promise<Float32Array> {
    const S = tokens.length
    const d = this.spec.hiddenSize
    const x = (await this.ranks[0]!.embed.run({ [IO.inputIds]: int64(tokens, [1, S]) }))[IO.hidden]!.data as Float32Array
    const hidden = new ort.Tensor('float32', x, [1, S, d])
    const mask = int64(new Array(start + S).fill(1), [1, start + S])
    const pos = int64(
      tokens.map((_, i) => start + i),
      [1, S],
    )
    const addSum = (parts: Float32Array[]): void => {
      const sum = Float32Array.from(parts[0]!)
      for (const p of parts.slice(1)) for (let i = 0; i < sum.length; i++) sum[i]! += p[i]!
      for (let i = 0; i < x.length; i++) x[i]! += sum[i]!
    }
    for (let l = 0; l < this.spec.numLayers; l++) {
      const outs = await Promise.all(
        this.ranks.map((r, k) =>
          r.attn[l]!.run({ [IO.hidden]: hidden, [IO.attentionMask]: mask, [IO.positionIds]: pos, [IO.pastKey]: this.past[k]![2 * l]!, [IO.pastValue]: this.past[k]![2 * l + 1]! }),
        ),
      )
      outs.forEach((o, k) => {
        this.past[k]![2 * l] = o[IO.presentKey] as ort.Tensor
        this.past[k]![2 * l + 1] = o[IO.presentValue] as ort.Tensor
      })
      addSum(outs.map((o) => o[IO.partial]!.data as Float32Array))
      const mlps = await Promise.all(this.ranks.map((r) => r.mlp[l]!.run({ [IO.hidden]: hidden })))
      addSum(mlps.map((o) => o[IO.partial]!.data as Float32Array))
    }
    return (await this.ranks[0]!.head!.run({ [IO.hidden]: hidden }))[IO.logits]!.data as Float32Array
  }
}

/** Worst |Δlogit| between the whole model and its tpSize shards: a prompt, then greedy KV decode. */
async function compareWithWhole(t: Test, spec: LlamaSpec, weights: LlamaWeights, whole: ort.InferenceSession, tpSize: number, prompt: number[], steps: number): Promise<void> {
  const ranks = await Promise.all(Array.from({ length: tpSize }, (_, r) => openRankShard(shardModel(spec, weights, tpSize, r), create)))
  t.teardown(() => Promise.all(ranks.map((r) => r.release())))
  const segmented = new SegmentedModel(spec, ranks)
  const shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, vocabSize: spec.vocabSize }
  const V = spec.vocabSize
  let past = emptyPast(shape, 1)
  let chunk = prompt
  let pos = 0
  let prefillDiff = 0
  let decodeDiff = 0
  const tokens: number[] = []
  for (let s = 0; s <= steps; s++) {
    const S = chunk.length
    const out = await whole.run(sequenceFeeds(past, chunk, pos))
    const expected = out.logits!.data as Float32Array
    const got = await segmented.run(chunk, pos)
    const diff = maxAbsDiff(got, expected)
    if (s === 0) prefillDiff = diff
    else decodeDiff = Math.max(decodeDiff, diff)
    let best = 0
    for (let v = 1; v < V; v++) if (expected[(S - 1) * V + v]! > expected[(S - 1) * V + best]!) best = v
    tokens.push(best)
    past = presentAsPast(shape, out)
    pos += S
    chunk = [best]
  }
  t.ok(prefillDiff < TOLERANCE, `prefill of ${prompt.length} tokens, every position: max |Δlogit| ${prefillDiff.toExponential(2)} < ${TOLERANCE}`)
  t.ok(decodeDiff < TOLERANCE, `${steps} KV decode steps: max |Δlogit| ${decodeDiff.toExponential(2)} < ${TOLERANCE}`)
}

const modelDir = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const info = readModelInfo(modelDir)
const spec = readLlamaSpec(modelDir)
const weights = loadLlamaWeights(info.onnxPath, spec)

t.test('weights read back from model.onnx are the ones composeModel builds', async (t) => {
  const composed = await composeModel('default')
  t.same(spec, composed.spec)
  const keys = ['inputNorm', 'q', 'k', 'v', 'o', 'postNorm', 'gate', 'up', 'down'] as const
  const flat = (w: LlamaWeights): Float32Array[] => [w.embed, ...w.layers.flatMap((l) => keys.map((k) => l[k])), w.finalNorm, w.lmHead]
  const a = flat(weights)
  const b = flat(composed.weights)
  t.equal(a.length, b.length)
  t.ok(
    a.every((x, i) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b[i]!.buffer, b[i]!.byteOffset, b[i]!.byteLength))),
    'bit for bit',
  )
})

t.test('default preset, tp 2: prefill and KV decode logits equal the unsharded model', async (t) => {
  const whole = await ort.InferenceSession.create(info.onnxPath)
  t.teardown(() => whole.release())
  await compareWithWhole(t, spec, weights, whole, 2, [5, 80, 200, 31, 7, 7, 300, 41, 99, 150, 3, 600], 12)
})

t.test('random GQA model, tp 4 with an MLP width that does not divide', async (t) => {
  const tiny: LlamaSpec = { hiddenSize: 64, numLayers: 2, numHeads: 8, numKvHeads: 4, headDim: 16, intermediateSize: 98, vocabSize: 40, maxPositions: 64, ropeTheta: 10000, rmsNormEps: 1e-6 }
  const w = randomLlamaWeights(tiny, 7)
  const whole = await ort.InferenceSession.create(buildLlamaOnnx(tiny, w))
  t.teardown(() => whole.release())
  t.same(
    [0, 1, 2, 3].map((r) => shardModel(tiny, w, 4, r).manifest.plan.mlp),
    [
      { start: 0, count: 24 },
      { start: 24, count: 25 },
      { start: 49, count: 24 },
      { start: 73, count: 25 },
    ],
  )
  await compareWithWhole(t, tiny, w, whole, 4, [1, 7, 3, 39, 0, 22, 5], 8)
})

t.test('a TP size that does not divide the heads or KV heads is refused by name', async (t) => {
  // default: 6 heads, 2 KV heads
  t.throws(() => shardModel(spec, weights, 4, 0), { name: 'TpConfigError', message: /--tp-size 4 does not divide the model: 6 attention heads and 2 KV heads.*try 1, 2/ })
  t.throws(() => shardModel(spec, weights, 3, 0), TpConfigError)
  await t.rejects(ensureShards(modelDir, 3), { name: 'TpConfigError', code: 'SPANSERVE_ERR_CONFIG' })
})

t.test('a graph spanserve did not build is refused with one clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-shard-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { onnx } = onnxProto
  const foreign = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, producerName: 'pytorch', opsetImport: [{ domain: '', version: 17 }], graph: { name: 'main_graph' } })).finish()
  writeFileSync(join(dir, 'model.onnx'), foreign)
  t.throws(
    () => loadLlamaWeights(join(dir, 'model.onnx'), spec),
    new TpModelFormatError(
      `tensor parallelism (--tp-size > 1) needs a spanserve-format model (the embedded model, or a directory spanserve built); ${join(dir, 'model.onnx')} was produced by "pytorch"`,
    ),
  )
})

t.test('shard files: deterministic, and each rank holds 1/T of the layer weights', async (t) => {
  const digest = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
  const a = shardModel(spec, weights, 2, 1)
  const b = shardModel(spec, weights, 2, 1)
  t.same(
    [...a.files].map(([n, x]) => [n, digest(x)]),
    [...b.files].map(([n, x]) => [n, digest(x)]),
    'same bytes from the same weights',
  )

  const set = await ensureShards(modelDir, 2)
  t.equal((await ensureShards(modelDir, 2)).dir, set.dir, 'built once, then found')
  const layerBytes = weights.layers.reduce((n, l) => n + Object.values(l).reduce((m: number, x: Float32Array) => m + x.byteLength, 0), 0)
  const normBytes = spec.numLayers * 2 * spec.hiddenSize * 4 // norms are replicated
  for (let r = 0; r < 2; r++) {
    const files = readdirSync(set.rankDir(r))
    const size = (f: string): number => statSync(join(set.rankDir(r), f)).size
    const layerFiles = files.filter((f) => /^(attn|mlp)_\d+\.onnx$/.test(f))
    t.equal(layerFiles.length, 2 * spec.numLayers)
    const held = layerFiles.reduce((n, f) => n + size(f), 0)
    const share = (layerBytes - normBytes) / 2 + normBytes
    t.ok(Math.abs(held / share - 1) < 0.01, `rank ${r}: layer files ${(held / 1e6).toFixed(2)} MB, 1/2 of the layers is ${(share / 1e6).toFixed(2)} MB`)
    t.equal(files.includes('head.onnx'), r === 0, 'the LM head lives on rank 0 only')
  }
})
