// The GGUF writer (bench/gguf/): the file parses back as llama.cpp's loader reads it, the weights sit
// in llama.cpp's layout, Q8_0 and Q4_0 blocks are ggml's, and, where node-llama-cpp is installed,
// llama.cpp generates spanserve's greedy tokens from the F32 file and (near enough) from the quantized ones.

import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { Tokenizer } from '@huggingface/tokenizers'
import type { Token } from 'node-llama-cpp'
import { alignUp } from '../../bench/gguf/format.ts'
import { llamaGguf, ropeRowOrder } from '../../bench/gguf/llama.ts'
import { dequantize, fromHalf, quantizeQ4_0, quantizeQ8_0, toHalf } from '../../bench/gguf/quantize.ts'
import { readGguf, readTensor, readTensorBytes } from '../../bench/gguf/reader.ts'
import { writeGguf } from '../../bench/gguf/writer.ts'
import { EOS_TOKEN, tokenizerConfigJson, tokenizerJson, trainBpe } from '../../src/model/bpe.ts'
import { composeModel, CORPUS_PATH } from '../../src/model/build.ts'
import { buildLlamaOnnx } from '../../src/model/onnx-graph.ts'
import { randomLlamaWeights } from '../../src/model/random-weights.ts'
import { createRng } from '../../src/model/rng.ts'
import type { LlamaSpec } from '../../src/model/spec.ts'
import { greedy } from './ort-helpers.ts'

/** Why llama.cpp cannot run here, or null. */
async function llamaCppMissing(): Promise<string | null> {
  try {
    await import('node-llama-cpp')
    return null
  } catch (err) {
    return `node-llama-cpp is not installed: ${(err as Error).message.split('\n')[0]}`
  }
}

// Decided before any test starts: tap ends the file's root test at its first idle tick.
const missing = await llamaCppMissing()

const dir = mkdtempSync(join(tmpdir(), 'spanserve-gguf-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const tiny: LlamaSpec = { hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, intermediateSize: 48, vocabSize: 0, maxPositions: 64, ropeTheta: 10000, rmsNormEps: 1e-6 }

t.test('rotary rows go from rotate_half pairs (j, j+half) to adjacent pairs (2j, 2j+1), per head', async (t) => {
  t.same([...ropeRowOrder(1, 4)], [0, 2, 1, 3])
  t.same([...ropeRowOrder(2, 6)], [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11])
})

t.test('f16 scales round to nearest even, as F16C and ggml convert them', async (t) => {
  t.equal(toHalf(1), 0x3c00)
  t.equal(toHalf(-2), 0xc000)
  t.equal(toHalf(65504), 0x7bff)
  t.equal(toHalf(1e6), 0x7c00, 'overflow is infinity')
  t.equal(toHalf(1 + 2 ** -11), 0x3c00, 'a tie goes to the even significand')
  t.equal(toHalf(1 + 3 * 2 ** -11), 0x3c02)
  t.equal(toHalf(2 ** -24), 0x0001, 'the smallest subnormal')
  t.equal(toHalf(2 ** -25), 0x0000, 'half of it ties to zero')
  for (const h of [0x3555, 0x0123, 0x8400, 0x7bff]) t.equal(toHalf(fromHalf(h)), h, `0x${h.toString(16)} round trips`)
})

// One block of -16 … 15: amax 16 at x[0] = -16.
const ramp = Float32Array.from({ length: 32 }, (_, j) => j - 16)

t.test("Q8_0: d = max|x| / 127, q = round(x / d), ggml's bytes", async (t) => {
  const b = quantizeQ8_0(ramp)
  t.equal(b.length, 34)
  t.equal(b[0]! | (b[1]! << 8), toHalf(16 / 127), 'the f16 scale first')
  const q = Array.from(new Int8Array(b.buffer, 2, 32))
  t.same(
    q,
    Array.from(ramp, (x) => Math.sign(x) * Math.round(Math.abs(x) * (127 / 16))),
  )
  t.equal(q[0], -127)
})

t.test("Q4_0: d = max / -8 with max's sign, q = min(15, trunc(x / d + 8.5)), q[j] and q[j + 16] share byte j", async (t) => {
  const b = quantizeQ4_0(ramp)
  t.equal(b.length, 18)
  t.equal(b[0]! | (b[1]! << 8), 0x4000, 'd = -16 / -8 = 2')
  // x / d + 8.5 = j / 2 + 0.5: q = floor(j / 2 + 0.5), the last clamped from 16 to 15.
  const q = Array.from({ length: 32 }, (_, j) => Math.min(15, Math.floor(j / 2 + 0.5)))
  t.same(
    Array.from(b.subarray(2)),
    Array.from({ length: 16 }, (_, j) => q[j]! | (q[j + 16]! << 4)),
  )
})

t.test('Q8_0 and Q4_0 round trip within half a step (Q4_0: a step at its clamped end)', async (t) => {
  const rng = createRng(11)
  const x = new Float32Array(32 * 64)
  // Blocks of scales 0.01 to 100 (d a normal f16), one all zero.
  for (let i = 32; i < x.length; i++) x[i] = rng.normal() * 10 ** ((Math.floor(i / 32) % 5) - 2)
  for (const [type, quantize, levels] of [
    ['Q8_0', quantizeQ8_0, 127],
    ['Q4_0', quantizeQ4_0, 8],
  ] as const) {
    const bytes = quantize(x)
    const y = dequantize(type, bytes, x.length)
    const size = bytes.length / 64
    let worst = 0
    for (let b = 0; b < 64; b++) {
      const d = Math.abs(fromHalf(bytes[b * size]! | (bytes[b * size + 1]! << 8)))
      let amax = 0
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!))
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j
        // d's f16 rounding (2^-11 relative) moves every q·d by up to q·d·2^-11.
        const clamped = type === 'Q4_0' && Math.abs(x[i]!) > 7.5 * d
        const bound = (clamped ? d : d / 2) + levels * d * 2 ** -11 + 1e-12
        worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / (bound || 1))
      }
      if (b === 0) t.equal(d, 0, 'an all-zero block has d = 0')
      else worst = Math.max(worst, Math.abs(d - amax / levels) / ((amax / levels) * 2 ** -11))
    }
    t.ok(worst <= 1, `${type}: d = amax / ${levels} in f16, every error within its bound (worst ${worst.toFixed(3)} of it)`)
  }
})

t.test('a tiny model parses back: header, metadata, tensor infos, aligned offsets, data in llama.cpp layout', async (t) => {
  const bpe = trainBpe(['the cat sat on the mat', 'the dog sat on the log', 'a cat and a dog'], 280)
  const spec = { ...tiny, vocabSize: bpe.tokens.length }
  const weights = randomLlamaWeights(spec, 7)
  const eosId = bpe.specialIds[EOS_TOKEN]!
  const { metadata, tensors } = llamaGguf({ spec, weights, tokenizerJson: tokenizerJson(bpe), tokenizerConfig: tokenizerConfigJson(bpe, 64), eosId }, 'tiny')
  const path = join(dir, 'tiny.gguf')
  writeGguf(path, metadata, tensors)

  const g = readGguf(path)
  t.equal(g.version, 3)
  const meta = (k: string) => g.metadata.get(k)
  t.same(meta('general.architecture'), { type: 'string', value: 'llama' })
  t.same(meta('llama.attention.head_count'), { type: 'u32', value: 4 })
  t.same(meta('llama.attention.head_count_kv'), { type: 'u32', value: 2 })
  t.same(meta('llama.rope.dimension_count'), { type: 'u32', value: 8 })
  t.equal(meta('llama.attention.layer_norm_rms_epsilon')!.type, 'f32')
  t.equal(meta('llama.attention.layer_norm_rms_epsilon')!.value, Math.fround(1e-6))
  t.equal(meta('llama.rope.freq_base')!.value, 10000)
  t.same(meta('tokenizer.ggml.model'), { type: 'string', value: 'gpt2' })
  const tokens = meta('tokenizer.ggml.tokens')!.value as string[]
  const types = meta('tokenizer.ggml.token_type')!.value as number[]
  t.same(tokens, bpe.tokens, 'tokens by id')
  t.equal(types[eosId], 3, 'the special tokens are control tokens')
  t.equal(types.filter((x) => x === 1).length, bpe.tokens.length - 3, 'the rest are normal')
  t.same(
    meta('tokenizer.ggml.merges')!.value,
    bpe.merges.map(([a, b]) => `${a} ${b}`),
  )
  t.same(meta('tokenizer.ggml.eos_token_id'), { type: 'u32', value: eosId })
  t.same(meta('tokenizer.ggml.add_bos_token'), { type: 'bool', value: false })

  t.equal(g.tensors.length, 1 + 9 * 2 + 2)
  t.equal(g.dataStart % g.alignment, 0, 'the data section starts aligned')
  for (const ti of g.tensors) t.equal(ti.offset % g.alignment, 0, `${ti.name} starts aligned`)
  const last = g.tensors.at(-1)!
  t.equal(g.fileSize, g.dataStart + alignUp(last.offset + 4 * last.dims.reduce((a, b) => a * b, 1), g.alignment), 'the file ends after the last tensor')
  const info = (name: string) => g.tensors.find((x) => x.name === name)!
  t.same(info('token_embd.weight').dims, [32, spec.vocabSize], 'ne = [hidden, vocab]')
  t.same(info('blk.1.attn_k.weight').dims, [32, 16])
  t.same(info('blk.0.ffn_down.weight').dims, [48, 32])

  // Element (out row o, in column i) of a GGUF matrix is x · W's W[i][o]; q and k rows are also rotary-permuted.
  const q = readTensor(path, g, 'blk.0.attn_q.weight')
  const order = ropeRowOrder(4, 8)
  let qOk = true
  for (let o = 0; o < 32; o++) for (let i = 0; i < 32; i++) qOk &&= q[o * 32 + i] === weights.layers[0]!.q[i * 32 + order[o]!]
  t.ok(qOk, 'attn_q is q_proj transposed, its rows permuted per head')
  const out = readTensor(path, g, 'output.weight')
  let outOk = true
  for (let v = 0; v < spec.vocabSize; v++) for (let i = 0; i < 32; i++) outOk &&= out[v * 32 + i] === weights.lmHead[i * spec.vocabSize + v]
  t.ok(outOk, 'output.weight is lm_head transposed')
  t.same(readTensor(path, g, 'blk.1.ffn_norm.weight'), weights.layers[1]!.postNorm)
})

t.test("a quantized tiny model: llama-quantize's tensor types, the file type, the F32 file's weights within the blocks' steps", async (t) => {
  const bpe = trainBpe(['the cat sat on the mat', 'the dog sat on the log', 'a cat and a dog'], 280)
  // Every row a whole number of 32-value blocks.
  const spec = { ...tiny, intermediateSize: 64, vocabSize: bpe.tokens.length }
  const weights = randomLlamaWeights(spec, 7)
  const src = { spec, weights, tokenizerJson: tokenizerJson(bpe), tokenizerConfig: tokenizerConfigJson(bpe, 64), eosId: bpe.specialIds[EOS_TOKEN]! }
  const f32Path = join(dir, 'tiny-f32.gguf')
  const plain = llamaGguf(src, 'tiny')
  writeGguf(f32Path, plain.metadata, plain.tensors)
  const f32 = readGguf(f32Path)
  for (const [q, type, fileType, levels] of [
    ['q8_0', 'Q8_0', 7, 127],
    ['q4_0', 'Q4_0', 2, 8],
  ] as const) {
    const path = join(dir, `tiny-${q}.gguf`)
    const { metadata, tensors } = llamaGguf(src, 'tiny', q)
    writeGguf(path, metadata, tensors)
    const g = readGguf(path)
    t.same(g.metadata.get('general.file_type'), { type: 'u32', value: fileType })
    t.same(g.metadata.get('general.quantization_version'), { type: 'u32', value: 2 })
    const typeOf = Object.fromEntries(g.tensors.map((x) => [x.name, x.type]))
    t.equal(typeOf['blk.0.attn_norm.weight'], 'F32', 'norms stay F32')
    t.equal(typeOf['output_norm.weight'], 'F32')
    for (const n of ['token_embd', 'blk.1.attn_q', 'blk.1.attn_k', 'blk.1.attn_v', 'blk.1.attn_output', 'blk.1.ffn_gate', 'blk.1.ffn_up', 'blk.1.ffn_down'])
      t.equal(typeOf[`${n}.weight`], type, `${n} is ${type}`)
    t.equal(typeOf['output.weight'], 'Q8_0', 'output is Q8_0 (llama-quantize: Q8_0 for Q8_0 files, Q6_K or its Q8_0 fallback for Q4_0)')
    for (const ti of g.tensors) t.equal(ti.offset % g.alignment, 0, `${ti.name} starts aligned`)
    // Quantized along ne[0]: each block is 32 consecutive values of one row of the F32 file's tensor.
    for (const name of ['blk.0.attn_q.weight', 'blk.1.ffn_down.weight', 'token_embd.weight']) {
      const want = readTensor(f32Path, f32, name)
      const got = readTensor(path, g, name)
      const bytes = readTensorBytes(path, g, name)
      const size = bytes.length / (want.length / 32)
      let worst = 0
      for (let i = 0; i < want.length; i++) {
        const b = Math.floor(i / 32)
        const d = Math.abs(fromHalf(bytes[b * size]! | (bytes[b * size + 1]! << 8)))
        worst = Math.max(worst, Math.abs(want[i]! - got[i]!) / (d + levels * d * 2 ** -11 + 1e-12))
      }
      t.ok(worst <= 1, `${name}: within a step of the F32 weights (worst ${worst.toFixed(2)} of it)`)
    }
  }
})

t.test("llama.cpp loads the default model's GGUF, tokenizes as spanserve and generates its greedy tokens", { skip: missing ?? false }, async (t) => {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp')
  const model = await composeModel('default')
  const path = join(dir, 'default.gguf')
  const { metadata, tensors } = llamaGguf(model, 'spanserve-default')
  writeGguf(path, metadata, tensors)
  const tokenizer = new Tokenizer(model.tokenizerJson, model.tokenizerConfig)
  const session = await ort.InferenceSession.create(buildLlamaOnnx(model.spec, model.weights))

  const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error })
  t.teardown(() => llama.dispose())
  const lm = await llama.loadModel({ modelPath: path, gpuLayers: 0 })
  const context = await lm.createContext({ sequences: 1, contextSize: 128, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' })

  const corpus = readFileSync(CORPUS_PATH, 'utf8').replaceAll('<|endoftext|>', '\n')
  const text = `${corpus.slice(0, 400)} Odd   spacing,\ttabs, "quotes", 1234 numbers, naïve café — dashes.\n\n`
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids
  t.same(lm.tokenize(text), ids, 'llama.cpp tokenizes text as the Hugging Face tokenizer does')
  t.equal(lm.detokenize(ids as Token[]), text, 'and detokenizes it back')

  const stream = tokenizer.encode(corpus, { add_special_tokens: false }).ids
  const prompts = [0, Math.floor(stream.length / 2)].map((start) => stream.slice(start, start + 24))
  const generate = async (ctx: typeof context, prompt: number[], n: number): Promise<number[]> => {
    const seq = ctx.getSequence()
    const got: number[] = []
    for await (const token of seq.evaluate(prompt as Token[], { temperature: 0, yieldEogToken: true })) {
      got.push(token)
      if (got.length === n) break
    }
    seq.dispose()
    return got
  }
  const wants: number[][] = []
  for (const [k, prompt] of prompts.entries()) {
    const want = await greedy(session, model.spec, prompt, 24)
    wants.push(want)
    t.same(await generate(context, prompt, want.length), want, `greedy tokens after corpus prompt ${k}: ${JSON.stringify(tokenizer.decode(want))}`)
  }

  // Quantized weights change the logits a little: Q8_0 keeps the first tokens, Q4_0 may part sooner.
  for (const q of ['q8_0', 'q4_0'] as const) {
    const qPath = join(dir, `default-${q}.gguf`)
    const g = llamaGguf(model, `spanserve-default-${q}`, q)
    writeGguf(qPath, g.metadata, g.tensors)
    const qlm = await llama.loadModel({ modelPath: qPath, gpuLayers: 0 })
    const qctx = await qlm.createContext({ sequences: 1, contextSize: 128, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' })
    for (const [k, prompt] of prompts.entries()) {
      const want = wants[k]!
      const got = await generate(qctx, prompt, want.length)
      t.equal(got.length, want.length, `${q}: ${want.length} tokens after prompt ${k}`)
      const same = got.findIndex((x, i) => x !== want[i])
      const agree = same < 0 ? got.length : same
      t.comment(`${q}, prompt ${k}: the first ${agree} of ${want.length} greedy tokens are the F32 file's; ${JSON.stringify(tokenizer.decode(got))}`)
      if (q === 'q8_0') t.ok(agree >= 8, `${q}: the first 8 greedy tokens after prompt ${k} are the F32 file's (${agree} are)`)
    }
    await qctx.dispose()
    await qlm.dispose()
  }
})
