/**
 * Hugging Face checkpoints (test/fixtures/hf-tiny, written by scripts/make-hf-fixture.py) served by
 * the fused graph built from their safetensors give transformers' greedy tokens exactly, alone and
 * batched, and its first-step logprobs within 1e-4; the llama fixture's Optimum-layout ONNX export
 * gives the same tokens through the file graph. What the fused graph does not compute is refused:
 * 'auto' falls back to the ONNX file and logs why.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { pino } from 'pino'
import type { PrefillEntry, SamplingParams } from '../../src/ipc/messages.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { openCheckpoint } from '../../src/model/safetensors.ts'
import { rowLogits } from '../../src/worker/batch-runner.ts'
import { openModelRunner, type ModelGraph, type OpenModelRunner } from '../../src/worker/model-graph.ts'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'hf-tiny')
const LOGPROB_TOLERANCE = 1e-4
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }

interface Expected {
  prompts: { prompt: number[]; tokens: number[]; top5: { ids: number[]; logprobs: number[] } }[]
}

const silent = pino({ level: 'silent' })
const cpu = { intraOp: 1, spinning: false, memArena: false }

function open(dir: string, graph: ModelGraph, log = silent): Promise<OpenModelRunner> {
  return openModelRunner(readModelInfo(dir), graph, { device: 'cpu', cpu, log })
}

const entry = (rid: string, tokens: number[]): PrefillEntry => ({ rid, trace: null, tokens: Int32Array.from(tokens), start: 0, last: true, sampling: greedy })

function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity
  for (const x of logits) max = Math.max(max, x)
  let sum = 0
  for (const x of logits) sum += Math.exp(x - max)
  const lse = max + Math.log(sum)
  return Float64Array.from(logits, (x) => x - lse)
}

/** Greedy generation of every prompt, the prompts decoded together: each one's tokens and first-step log-softmax. */
async function generate(opened: OpenModelRunner, expected: Expected, rids: string[]): Promise<{ tokens: number[][]; first: Float64Array[] }> {
  const { runner } = opened
  const tokens: number[][] = []
  const first: Float64Array[] = []
  for (const [i, p] of expected.prompts.entries()) {
    const out = await runner.prefill(entry(rids[i]!, p.prompt))
    tokens.push([out.tokens[0]!])
    first.push(logSoftmax(rowLogits(out, 0)))
  }
  for (;;) {
    const live = rids.filter((_, i) => tokens[i]!.length < expected.prompts[i]!.tokens.length)
    if (live.length === 0) break
    const out = await runner.decode(live)
    live.forEach((rid, j) => tokens[rids.indexOf(rid)]!.push(out.tokens[j]!))
  }
  return { tokens, first }
}

/** Each prompt run alone (prefill, then decode steps), then all three together. */
async function checkGreedy(t: Test, opened: OpenModelRunner, expected: Expected, logprobs: boolean): Promise<void> {
  for (const [i, p] of expected.prompts.entries()) {
    const { tokens, first } = await generate(opened, { prompts: [p] }, [`alone-${i}`])
    t.same(tokens[0], p.tokens, `prompt ${i} alone: transformers' greedy tokens`)
    if (!logprobs) continue
    const lp = first[0]!
    const top5 = Array.from(lp.keys())
      .sort((a, b) => lp[b]! - lp[a]!)
      .slice(0, 5)
    t.same(top5, p.top5.ids, `prompt ${i}: transformers' top-5 first tokens`)
    const worst = Math.max(...p.top5.ids.map((id, k) => Math.abs(lp[id]! - p.top5.logprobs[k]!)))
    t.ok(worst < LOGPROB_TOLERANCE, `prompt ${i}: first-step logprobs within ${LOGPROB_TOLERANCE} (max diff ${worst.toExponential(2)})`)
  }
  const batched = await generate(
    opened,
    expected,
    expected.prompts.map((_, i) => `batch-${i}`),
  )
  t.same(
    batched.tokens,
    expected.prompts.map((p) => p.tokens),
    'the prompts decoded together: the same tokens',
  )
}

for (const type of ['llama', 'qwen2', 'mistral']) {
  t.test(`${type} checkpoint: fused graph from the safetensors`, async (t) => {
    const dir = join(FIXTURES, type)
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected
    const opened = await open(dir, 'auto')
    t.teardown(() => opened.close())
    t.equal(opened.graph, 'fused')
    await checkGreedy(t, opened, expected, true)
  })
}

t.test('llama Optimum export: the file graph gives the same tokens', { skip: !existsSync(join(FIXTURES, 'llama', 'model.onnx')) }, async (t) => {
  const dir = join(FIXTURES, 'llama')
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected
  const opened = await open(dir, 'file')
  t.teardown(() => opened.close())
  t.equal(opened.graph, 'file')
  await checkGreedy(t, opened, expected, true)
})

t.test('safetensors dtypes and shards are read as float32', async (t) => {
  // qwen2 is stored as BF16, mistral as F16 in shards: the reader's float32 against the F32 llama's shapes.
  const qwen = openCheckpoint(join(FIXTURES, 'qwen2'))
  const embed = qwen.read('model.embed_tokens.weight')
  t.equal(embed.length, 1024 * 64)
  t.ok(
    embed.every((x) => Number.isFinite(x) && new Uint32Array(Float32Array.of(x).buffer)[0]! % 0x10000 === 0),
    'BF16: the low 16 bits are zero',
  )
  const mistral = openCheckpoint(join(FIXTURES, 'mistral'))
  t.same(mistral.shape('lm_head.weight'), [1024, 64])
  t.ok(mistral.has('model.layers.1.mlp.down_proj.weight'), 'tensors of every shard')
  t.ok(
    mistral.read('model.norm.weight').every((x) => Math.abs(x - 1) < 1),
    'F16 norm gains near one',
  )
  t.throws(() => mistral.read('no.such.tensor'), /no tensor "no\.such\.tensor"/)
})

/** A copy of a fixture with config.json changed. */
function variant(t: Test, type: string, change: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), `spanserve-hf-${type}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(join(FIXTURES, type), dir, { recursive: true })
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...change }))
  return dir
}

t.test('a directory with only safetensors: onnxPath is empty, the file graph fails clearly', async (t) => {
  const dir = join(FIXTURES, 'qwen2')
  t.equal(readModelInfo(dir).onnxPath, '')
  await t.rejects(open(dir, 'file'), /holds no ONNX decoder for --model-graph file/)
})

t.test('what the fused graph does not compute is refused; auto falls back to the file with the reason logged', async (t) => {
  const window = variant(t, 'mistral', { sliding_window: 128 })
  await t.rejects(open(window, 'fused'), /does not implement sliding_window 128 below max_position_embeddings 256/)
  await t.rejects(open(window, 'auto'), /holds no ONNX decoder .*sliding_window 128/)

  const scaled = variant(t, 'llama', { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 10000 } })
  await t.rejects(open(scaled, 'fused'), /rope_parameters of type "linear"/)
  const lines: string[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
  const opened = await open(scaled, 'auto', log)
  t.teardown(() => opened.close())
  t.equal(opened.graph, 'file')
  const reason = lines.map((l) => JSON.parse(l) as { msg: string; reason?: string }).find((l) => l.msg === 'fused model graph not built')?.reason
  t.match(reason, /rope_parameters of type "linear"/)

  const old = variant(t, 'llama', { rope_scaling: { type: 'dynamic', factor: 2 } })
  await t.rejects(open(old, 'fused'), /rope_scaling of type "dynamic"/)
})
