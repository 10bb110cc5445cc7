// The fused graph (resident cache read in place, only the new K/V returned) computes what the
// Optimum-layout graph computes: prefill in chunks over a cache, then ragged rows decoded together in
// a right-padded buffer whose slots past each row's length hold garbage.

import t from 'tap'
import * as ort from 'onnxruntime-node'
import { buildFusedLlamaOnnx, FUSED_IO, serializeModel } from '../../src/model/fused-graph.ts'
import { buildLlamaOnnx } from '../../src/model/onnx-graph.ts'
import { randomLlamaWeights } from '../../src/model/random-weights.ts'
import type { LlamaSpec } from '../../src/model/spec.ts'
import { emptyPast, int64, maxAbsDiff, presentAsPast, sequenceFeeds } from './ort-helpers.ts'

const TOLERANCE = 1e-4

const spec: LlamaSpec = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 6,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 96,
  vocabSize: 50,
  maxPositions: 128,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
}
const { numLayers: L, numKvHeads: KV, headDim: hd, vocabSize: V } = spec
const weights = randomLlamaWeights(spec, 5)
const optimum = await ort.InferenceSession.create(buildLlamaOnnx(spec, weights))
const fused = await ort.InferenceSession.create(serializeModel(buildFusedLlamaOnnx(spec, weights)))
t.teardown(async () => {
  await optimum.release()
  await fused.release()
})

const argmax = (a: Float32Array, from: number): number => {
  let best = 0
  for (let v = 1; v < V; v++) if (a[from + v]! > a[from + best]!) best = v
  return best
}

/** One row alone through the Optimum graph, greedy: each step's last-position logits and tokens. */
async function optimumAlone(prompt: number[], steps: number): Promise<{ logits: Float32Array[]; tokens: number[] }> {
  let past = emptyPast({ ...spec }, 1)
  let chunk = prompt
  let pos = 0
  const logits: Float32Array[] = []
  const tokens: number[] = []
  for (let s = 0; s <= steps; s++) {
    const out = await optimum.run(sequenceFeeds(past, chunk, pos))
    const data = out.logits!.data as Float32Array
    logits.push(data.slice((chunk.length - 1) * V, chunk.length * V))
    tokens.push(argmax(data, (chunk.length - 1) * V))
    pos += chunk.length
    chunk = [tokens.at(-1)!]
    past = presentAsPast({ ...spec }, out)
  }
  return { logits, tokens }
}

/** Garbage that attention must never see: large and finite. */
const garbage = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 101) - 50)

/** A fused run: rows' caches [B,KV,C,hd] per layer kind, their lengths, and each row's chunk (equal lengths). */
async function fusedRun(cache: Float32Array[], capacity: number, lengths: number[], chunks: number[][]): Promise<ort.InferenceSession.ReturnType> {
  const B = chunks.length
  const S = chunks[0]!.length
  const feeds: Record<string, ort.Tensor> = {
    [FUSED_IO.inputIds]: int64(chunks.flat(), [B, S]),
    [FUSED_IO.positionIds]: int64(
      chunks.flatMap((c, b) => c.map((_, j) => lengths[b]! + j)),
      [B, S],
    ),
    [FUSED_IO.cacheLengths]: int64(lengths, [B]),
  }
  for (let l = 0; l < L; l++) {
    feeds[FUSED_IO.cacheKey(l)] = new ort.Tensor('float32', cache[2 * l]!, [B, KV, capacity, hd])
    feeds[FUSED_IO.cacheValue(l)] = new ort.Tensor('float32', cache[2 * l + 1]!, [B, KV, capacity, hd])
  }
  return fused.run(feeds)
}

/** Write `out`'s new K/V of row `b` (S tokens) into row `row` of a cache of `capacity` slots, from slot `at`. */
function store(cache: Float32Array[], capacity: number, row: number, at: number, out: ort.InferenceSession.ReturnType, b: number): void {
  for (let l = 0; l < L; l++) {
    for (const [k, name] of [FUSED_IO.newKey(l), FUSED_IO.newValue(l)].entries()) {
      const t = out[name]!
      const S = t.dims[2]!
      const data = t.data as Float32Array
      for (let h = 0; h < KV; h++) {
        const from = (b * KV + h) * S * hd
        cache[2 * l + k]!.set(data.subarray(from, from + S * hd), ((row * KV + h) * capacity + at) * hd)
      }
    }
  }
}

t.test('chunked prefill over a cache, then ragged rows decoded together, give the Optimum graph logits', async (t) => {
  const prompts = [[3, 9, 27, 1, 44], [12, 5], [7, 7, 30, 41, 19, 2, 8], [33]]
  const STEPS = 8
  const solo = await Promise.all(prompts.map((p) => optimumAlone(p, STEPS)))
  const B = prompts.length
  const longest = Math.max(...prompts.map((p) => p.length)) + STEPS
  const capacity = longest + 3
  const resident = Array.from({ length: 2 * L }, () => garbage(B * KV * capacity * hd))
  const lengths = prompts.map(() => 0)
  const tokens: number[][] = prompts.map(() => [])
  let worst = 0
  // Prefill row by row, in two chunks: the first with an empty cache (C = 0), the second over it.
  for (const [b, p] of prompts.entries()) {
    const cut = Math.ceil(p.length / 2)
    const first = await fusedRun(
      Array.from({ length: 2 * L }, () => new Float32Array(0)),
      0,
      [0],
      [p.slice(0, cut)],
    )
    const own = Array.from({ length: 2 * L }, () => garbage(KV * (cut + 4) * hd))
    store(own, cut + 4, 0, 0, first, 0)
    let out = first
    const rest = p.slice(cut)
    if (rest.length > 0) {
      out = await fusedRun(own, cut + 4, [cut], [rest])
      store(resident, capacity, b, cut, out, 0)
    }
    store(resident, capacity, b, 0, first, 0)
    const S = (rest.length > 0 ? rest : p).length
    const logits = (out.logits!.data as Float32Array).slice((S - 1) * V, S * V)
    worst = Math.max(worst, maxAbsDiff(logits, solo[b]!.logits[0]!))
    tokens[b]!.push(argmax(logits, 0))
    lengths[b] = p.length
  }
  for (let s = 0; s < STEPS; s++) {
    const out = await fusedRun(
      resident,
      capacity,
      lengths,
      tokens.map((x) => [x.at(-1)!]),
    )
    const data = out.logits!.data as Float32Array
    for (let b = 0; b < B; b++) {
      worst = Math.max(worst, maxAbsDiff(data.subarray(b * V, (b + 1) * V), solo[b]!.logits[s + 1]!))
      tokens[b]!.push(argmax(data, b * V))
      store(resident, capacity, b, lengths[b]!, out, b)
      lengths[b]! += 1
    }
  }
  t.same(
    tokens,
    solo.map((x) => x.tokens),
    'greedy tokens equal, row by row',
  )
  t.ok(worst < TOLERANCE, `max |Δlogit| = ${worst.toExponential(2)} < ${TOLERANCE}`)
})

t.test('the outputs hold only the new tokens', async (t) => {
  const out = await fusedRun(
    Array.from({ length: 2 * L }, () => garbage(2 * KV * 6 * hd)),
    6,
    [4, 6],
    [
      [1, 2],
      [3, 4],
    ],
  )
  t.same(out[FUSED_IO.newKey(0)]!.dims, [2, KV, 2, hd])
  t.same(out[FUSED_IO.logits]!.dims, [2, 2, V])
})
