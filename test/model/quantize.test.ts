// Weight-only quantization into MatMulNBits: the block layout ONNX Runtime reads, the error it costs
// per block, and the embedded model's quality and serving once its MatMuls are quantized.

import t from 'tap'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import onnxProto from 'onnx-proto'
import { Tokenizer } from '@huggingface/tokenizers'
import { agreement, scoreText } from '../../harness/quality.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'
import { CORPUS_PATH, ensureModel } from '../../src/model/build.ts'
import { ModelLoadError } from '../../src/model/errors.ts'
import { checkSignature, readModelInfo } from '../../src/model/load.ts'
import { type QuantizationBits, quantizeBlockwise, quantizedFileName, quantizeMatMuls, quantizeOnnx } from '../../src/model/quantize.ts'
import { SeededRandom } from '../../src/model/rng.ts'
import { greedy, maxAbsDiff } from './ort-helpers.ts'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
/** Corpus tokens scored: enough for stable numbers, one session run of a few hundred ms. */
const SCORED_TOKENS = 512

function randomWeights(count: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed)
  // Mixed magnitudes, so blocks get different scales; one all-zero stretch checks the zero scale.
  return Float32Array.from({ length: count }, (_, i) => (i % 97 < 40 ? 0 : (rng.next() * 2 - 1) * (1 + (i % 5))))
}

/** w[k, n] back from MatMulNBits's layout, as its reference dequantizes: (q - 2^(bits-1)) * scale. */
function dequantize(data: Uint8Array, scales: Float32Array, K: number, N: number, bits: QuantizationBits, blockSize = 32): Float32Array {
  const nBlocks = Math.ceil(K / blockSize)
  const blob = (blockSize * bits) / 8
  const out = new Float32Array(K * N)
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize)
      const i = k % blockSize
      const at = (n * nBlocks + b) * blob
      const q = bits === 8 ? data[at + i]! : (data[at + (i >> 1)]! >> ((i & 1) * 4)) & 15
      out[k * N + n] = (q - (1 << (bits - 1))) * scales[n * nBlocks + b]!
    }
  }
  return out
}

t.test('quantizeBlockwise: layout, padding and error per block', async (t) => {
  const K = 100 // not a multiple of 32: the last block is padded
  const N = 7
  const w = randomWeights(K * N, 1)
  for (const bits of [8, 4] as const) {
    const { data, scales } = quantizeBlockwise(w, K, N, bits)
    t.equal(data.length, N * 4 * ((32 * bits) / 8), `int${bits}: [N, 4 blocks, blob]`)
    t.equal(scales.length, N * 4)
    const back = dequantize(data, scales, K, N, bits)
    let worst = 0
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const scale = Math.abs(scales[n * 4 + Math.floor(k / 32)]!)
        // int8 never clamps; int4's one clamped code (+8 → 7) costs a whole step.
        const bound = bits === 8 ? scale / 2 : scale
        worst = Math.max(worst, Math.abs(back[k * N + n]! - w[k * N + n]!) / (bound + 1e-30) - 1e-5)
      }
    }
    t.ok(worst <= 1, `int${bits}: every weight within its block's bound (worst ${worst.toFixed(4)} of it)`)
    // Padding past K is the zero point, so it adds nothing to the product.
    const blob = (32 * bits) / 8
    const lastBlock = data.subarray(3 * blob, 4 * blob)
    const padStart = ((K - 96) * bits) / 8
    t.ok(
      lastBlock.subarray(padStart).every((b) => b === (bits === 8 ? 128 : 0x88)),
      `int${bits}: padding holds the zero point`,
    )
  }
  // int4 packs the low nibble first: codes 0..15 of a block with max |w| = 8 (scale -1, as Q4_0).
  const ramp = Float32Array.from({ length: 32 }, (_, k) => 8 - (k % 16))
  const { data, scales } = quantizeBlockwise(ramp, 32, 1, 4)
  t.equal(scales[0], -1)
  t.same([...data.subarray(0, 8)], [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe])
})

/** One MatMul of [M, K] by a weight stored as raw_data or float_data, beside one of two activations. */
function tinyModel(K: number, N: number, w: Float32Array, asFloatData: boolean) {
  const weight = asFloatData
    ? onnx.TensorProto.create({ name: 'W', dims: [K, N], dataType: FLOAT, floatData: Array.from(w) })
    : onnx.TensorProto.create({ name: 'W', dims: [K, N], dataType: FLOAT, rawData: new Uint8Array(w.buffer.slice(0)) })
  const io = (name: string, dims: (string | number)[]) =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } } })
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'tiny',
      node: [
        { opType: 'MatMul', name: 'weighted', input: ['A', 'W'], output: ['Y'] },
        { opType: 'MatMul', name: 'activations', input: ['A', 'B'], output: ['Z'] },
      ],
      initializer: [weight],
      input: [io('A', ['M', K]), io('B', [K, N])],
      output: [io('Y', ['M', N]), io('Z', ['M', N])],
    },
  })
}

t.test('ONNX Runtime computes A @ dequantized W from what quantizeMatMuls writes', async (t) => {
  const K = 96
  const N = 40
  const M = 3
  const w = randomWeights(K * N, 2)
  const a = Float32Array.from(randomWeights(M * K, 3), (x) => x / 4)
  for (const bits of [8, 4] as const) {
    for (const asFloatData of [false, true]) {
      const model = tinyModel(K, N, w, asFloatData)
      t.equal(quantizeMatMuls(model, bits), 1, 'only the MatMul by an initializer is replaced')
      t.same(
        model.graph!.node!.map((n) => `${n.domain || ''}:${n.opType}`),
        ['com.microsoft:MatMulNBits', ':MatMul'],
      )
      t.notOk(
        model.graph!.initializer!.some((i) => i.name === 'W'),
        'the fp32 weight is gone',
      )
      t.ok(model.opsetImport!.some((o) => o.domain === 'com.microsoft'))
      const { data, scales } = quantizeBlockwise(w, K, N, bits)
      const wq = dequantize(data, scales, K, N, bits)
      const ref = new Float32Array(M * N)
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) ref[m * N + n]! += a[m * K + k]! * wq[k * N + n]!
      const range = Math.max(...ref.map(Math.abs))
      // accuracy_level 0 multiplies in fp32, so it checks the layout to rounding; level 4 (what is
      // written) rounds the activations to int8 per block, well under 1% of the output range.
      for (const [level, tolerance] of [
        [0, 1e-5],
        [4, 0.01],
      ] as const) {
        for (const a of model.graph!.node![0]!.attribute!) if (a.name === 'accuracy_level') a.i = level
        const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish())
        const out = await session.run({ A: new ort.Tensor('float32', a, [M, K]), B: new ort.Tensor('float32', w, [K, N]) })
        const worst = maxAbsDiff(out.Y!.data as Float32Array, ref)
        t.ok(worst < tolerance * range, `int${bits} ${asFloatData ? 'float_data' : 'raw_data'} accuracy_level ${level}: max |Δ| ${worst.toExponential(2)}, output range ${range.toFixed(2)}`)
      }
    }
  }
})

const modelDir = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const info = readModelInfo(modelDir)
const fp32Bytes = readFileSync(info.onnxPath)

t.test('the embedded model: 15 MatMulNBits and the quality each quantization keeps', async (t) => {
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(modelDir, 'tokenizer_config.json'), 'utf8')))
  const tokens = tokenizer.encode(readFileSync(CORPUS_PATH, 'utf8'), { add_special_tokens: false }).ids.slice(0, SCORED_TOKENS)
  t.equal(tokens.length, SCORED_TOKENS)
  const fp32 = await scoreText(await ort.InferenceSession.create(fp32Bytes), info, tokens)
  const scores: Record<string, number> = { fp32: fp32.perplexity }
  for (const q of ['int8', 'int4'] as const) {
    const model = onnx.ModelProto.decode(fp32Bytes)
    // 7 per layer (q, k, v, o, gate, up, down) and lm_head; the attention MatMuls stay fp32.
    t.equal(quantizeMatMuls(model, q === 'int8' ? 8 : 4), 7 * info.numLayers + 1, `${q}: MatMuls replaced`)
    const nodes = model.graph!.node!
    t.equal(nodes.filter((n) => n.opType === 'MatMul').length, 2 * info.numLayers, `${q}: attention MatMuls left`)
    const score = await scoreText(await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish()), info, tokens)
    const agree = agreement(fp32.predictions, score.predictions)
    scores[q] = score.perplexity
    t.comment(`${q}: perplexity ${score.perplexity.toFixed(3)} (fp32 ${fp32.perplexity.toFixed(3)}), top-1 agreement ${agree.toFixed(3)}`)
    if (q === 'int8') {
      t.ok(Math.abs(score.perplexity / fp32.perplexity - 1) < 0.01, 'int8 perplexity within 1% of fp32')
      t.ok(agree >= 0.95, `int8 top-1 agreement ${agree.toFixed(3)} ≥ 0.95`)
    } else {
      t.ok(score.perplexity / fp32.perplexity < 1.1, 'int4 perplexity within 10% of fp32')
      t.ok(agree >= 0.75, `int4 top-1 agreement ${agree.toFixed(3)} ≥ 0.75`)
    }
  }
  t.ok(scores.int4! > scores.int8!, 'int4 costs more than int8')
})

t.test('--onnx-file: a MatMulNBits file is picked, checked and generates as it is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-quantized-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.onnx']) copyFileSync(join(modelDir, f), join(dir, f))
  const name = quantizedFileName('int4')
  t.equal(name, 'model_q4.onnx')
  t.equal(quantizedFileName('int8'), 'model_q8.onnx')
  writeFileSync(join(dir, name), quantizeOnnx(fp32Bytes, 'int4'))

  t.equal(readModelInfo(dir).onnxPath, join(dir, 'model.onnx'), 'no --onnx-file: model.onnx first')
  const picked = readModelInfo(dir, name)
  t.equal(picked.onnxPath, join(dir, name))
  const session = await ort.InferenceSession.create(picked.onnxPath)
  checkSignature(picked, session.inputNames, session.outputNames)
  t.equal(picked.hasPositionIds, true)
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')))
  const ids = await greedy(session, picked, tokenizer.encode('Once upon a time').ids, 20)
  t.comment(`int4: ${JSON.stringify(tokenizer.decode(ids))}`)
  t.ok(new Set(ids).size >= 5, `${new Set(ids).size} distinct tokens of 20`)

  try {
    readModelInfo(dir, 'model_q8.onnx')
    t.fail('a missing --onnx-file must throw')
  } catch (err) {
    t.type(err, ModelLoadError)
    t.match((err as Error).message, /model_q8\.onnx does not exist .*holds model\.onnx, model_q4\.onnx/)
  }
})
