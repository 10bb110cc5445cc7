// The ONNX graph computes the same function as the plain-TypeScript reference forward pass.

import t from 'tap'
import * as ort from 'onnxruntime-node'
import { composeModel } from '../../src/model/build.ts'
import { buildLlamaOnnx } from '../../src/model/onnx-graph.ts'
import { randomLlamaWeights } from '../../src/model/random-weights.ts'
import { forward } from '../../src/model/reference.ts'
import type { LlamaSpec } from '../../src/model/spec.ts'
import { emptyPast, int64, maxAbsDiff, presentAsPast } from './ort-helpers.ts'

// Float32 accumulation order differs between ORT and the reference; logits are O(10).
const TOLERANCE = 1e-3

const tiny: LlamaSpec = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 96,
  vocabSize: 40,
  maxPositions: 64,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
}
const shapeOf = (s: LlamaSpec) => ({ numLayers: s.numLayers, numKvHeads: s.numKvHeads, headDim: s.headDim, vocabSize: s.vocabSize })

t.test('tiny random GQA model: prefill logits match the reference', async (t) => {
  const weights = randomLlamaWeights(tiny, 11)
  const session = await ort.InferenceSession.create(buildLlamaOnnx(tiny, weights))
  const tokens = [1, 7, 3, 39, 0, 22, 5, 5, 17]
  const out = await session.run({
    ...emptyPast(shapeOf(tiny), 1),
    input_ids: int64(tokens, [1, tokens.length]),
    attention_mask: int64(
      tokens.map(() => 1),
      [1, tokens.length],
    ),
    position_ids: int64(
      tokens.map((_, i) => i),
      [1, tokens.length],
    ),
  })
  t.same(out.logits!.dims, [1, tokens.length, tiny.vocabSize])
  t.same(out['present.1.value']!.dims, [1, tiny.numKvHeads, tokens.length, tiny.headDim])
  const diff = maxAbsDiff(out.logits!.data as Float32Array, forward(tiny, weights, tokens))
  t.ok(diff < TOLERANCE, `max abs diff ${diff} < ${TOLERANCE}`)
})

t.test('tiny random GQA model: left-padded batch with KV cache matches per-row reference', async (t) => {
  const weights = randomLlamaWeights(tiny, 12)
  const session = await ort.InferenceSession.create(buildLlamaOnnx(tiny, weights))
  const V = tiny.vocabSize
  const rows = [
    [4, 9, 2, 31, 8, 6],
    [13, 1, 27, 3],
  ]
  const width = 6
  // Prefill: row 1 is left-padded with mask 0; its positions count from its first real token.
  const ids = rows.flatMap((r) => [...new Array(width - r.length).fill(0), ...r])
  const mask = rows.flatMap((r) => [...new Array(width - r.length).fill(0), ...r.map(() => 1)])
  const pos = rows.flatMap((r) => [...new Array(width - r.length).fill(0), ...r.map((_, i) => i)])
  const prefill = await session.run({
    ...emptyPast(shapeOf(tiny), 2),
    input_ids: int64(ids, [2, width]),
    attention_mask: int64(mask, [2, width]),
    position_ids: int64(pos, [2, width]),
  })
  const logits = prefill.logits!.data as Float32Array
  t.notOk(logits.some(Number.isNaN), 'fully masked (padding) query rows stay finite')
  rows.forEach((r, b) => {
    const ref = forward(tiny, weights, r)
    const got = logits.subarray((b * width + width - r.length) * V, (b + 1) * width * V)
    const diff = maxAbsDiff(got, ref)
    t.ok(diff < TOLERANCE, `prefill row ${b}: max abs diff ${diff}`)
  })

  // Two decode steps of one token per row, reusing present as past.
  let past = presentAsPast(shapeOf(tiny), prefill)
  const next = [
    [11, 19],
    [2, 35],
  ]
  let total = width
  for (let step = 0; step < 2; step++) {
    total += 1
    const out = await session.run({
      ...past,
      input_ids: int64(
        next.map((n) => n[step]!),
        [2, 1],
      ),
      attention_mask: int64(
        rows.flatMap((r) => [...new Array(width - r.length).fill(0), ...new Array(total - width + r.length).fill(1)]),
        [2, total],
      ),
      position_ids: int64(
        rows.map((r) => r.length + step),
        [2, 1],
      ),
    })
    const data = out.logits!.data as Float32Array
    rows.forEach((r, b) => {
      const seq = [...r, ...next[b]!.slice(0, step + 1)]
      const ref = forward(tiny, weights, seq).subarray((seq.length - 1) * V)
      const diff = maxAbsDiff(data.subarray(b * V, (b + 1) * V), ref)
      t.ok(diff < TOLERANCE, `decode step ${step} row ${b}: max abs diff ${diff}`)
    })
    past = presentAsPast(shapeOf(tiny), out)
  }
})

t.test('default preset: logits match the reference, previous-token head is sharp', async (t) => {
  const model = await composeModel('default')
  t.ok(model.info.prevTokenMinWeight >= 0.99, `previous-token weight ${model.info.prevTokenMinWeight} >= 0.99 at every position`)
  const session = await ort.InferenceSession.create(buildLlamaOnnx(model.spec, model.weights))
  const tokens = model.corpusTokens.slice(40, 56) as number[]
  const out = await session.run({
    ...emptyPast(shapeOf(model.spec), 1),
    input_ids: int64(tokens, [1, tokens.length]),
    attention_mask: int64(
      tokens.map(() => 1),
      [1, tokens.length],
    ),
    position_ids: int64(
      tokens.map((_, i) => i),
      [1, tokens.length],
    ),
  })
  const diff = maxAbsDiff(out.logits!.data as Float32Array, forward(model.spec, model.weights, tokens))
  t.ok(diff < TOLERANCE, `max abs diff ${diff} < ${TOLERANCE}`)
})
