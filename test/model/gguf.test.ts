// The GGUF writer (bench/gguf/): the file parses back as llama.cpp's loader reads it, the weights sit
// in llama.cpp's layout, and, where node-llama-cpp is installed, llama.cpp generates spanserve's greedy tokens.

import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { Tokenizer } from '@huggingface/tokenizers'
import type { Token } from 'node-llama-cpp'
import { alignUp } from '../../bench/gguf/format.ts'
import { llamaGguf, ropeRowOrder } from '../../bench/gguf/llama.ts'
import { readGguf, readTensor } from '../../bench/gguf/reader.ts'
import { writeGguf } from '../../bench/gguf/writer.ts'
import { EOS_TOKEN, tokenizerConfigJson, tokenizerJson, trainBpe } from '../../src/model/bpe.ts'
import { composeModel, CORPUS_PATH } from '../../src/model/build.ts'
import { buildLlamaOnnx } from '../../src/model/onnx-graph.ts'
import { randomLlamaWeights } from '../../src/model/random-weights.ts'
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
  const seq = context.getSequence()
  for (const start of [0, Math.floor(stream.length / 2)]) {
    const prompt = stream.slice(start, start + 24)
    const want = await greedy(session, model.spec, prompt, 24)
    const got: number[] = []
    for await (const token of seq.evaluate(prompt as Token[], { temperature: 0, yieldEogToken: true })) {
      got.push(token)
      if (got.length === want.length) break
    }
    await seq.clearHistory()
    t.same(got, want, `greedy tokens after corpus token ${start}: ${JSON.stringify(tokenizer.decode(want))}`)
  }
})
