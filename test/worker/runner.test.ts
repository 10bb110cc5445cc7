/**
 * The worker's runners on the real ONNX Runtime session of the embedded model, each test run for
 * both graphs (the ONNX file with ModelRunner, the fused graph with FusedRunner):
 * (a) decoding with the KV cache gives the logits of a full recompute; (b) sequences decoded
 * together (ragged, padded) give token for token what each gives alone; chunked prefill
 * equals one-shot prefill.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import onnxProto from 'onnx-proto'
import t from 'tap'
import { pino } from 'pino'
import { ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { serializeModel } from '../../src/model/fused-graph.ts'
import { decodeCapacity, FusedRunner } from '../../src/worker/fused-runner.ts'
import { openModelRunner } from '../../src/worker/model-graph.ts'
import { ModelRunner, rowLogits } from '../../src/worker/runner.ts'
import type { PrefillEntry, SamplingParams } from '../../src/ipc/messages.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'

const { onnx } = onnxProto
const TOLERANCE = 1e-3
const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }
const info = readModelInfo(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR }))
const opened = await Promise.all(
  (['file', 'fused'] as const).map((graph) => openModelRunner(info, graph, { device: 'cpu', cpu: { intraOp: 0, spinning: false, memArena: false }, log: pino({ level: 'silent' }) })),
)
t.teardown(async () => {
  for (const o of opened) await o.close()
})

const prefillEntry = (rid: string, tokens: number[], start = 0, last = true): PrefillEntry => ({
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

const PROMPTS = [[5, 80, 200, 31], [400, 12], [7, 7, 300, 41, 99, 150, 3], [600], [250, 251, 252, 253, 254]]

for (const { graph, runner: first } of opened) {
  const { session } = first
  const newRunner = (): ModelRunner | FusedRunner => (graph === 'fused' ? new FusedRunner(session, info) : new ModelRunner(session, info))

  t.test(`${graph} graph`, async (t) => {
    /** Last-position logits of `tokens` computed from scratch (no cache). */
    async function recompute(tokens: number[]): Promise<Float32Array> {
      const r = newRunner()
      const { logits } = await r.prefill(prefillEntry('x', tokens))
      return logits.slice()
    }

    /** One sequence run alone, greedy: its first token, then `steps` decode steps, and each step's logits. */
    type Alone = { tokens: number[]; logits: Float32Array[] }
    async function alone(prompt: number[], steps: number): Promise<Alone> {
      const r = newRunner()
      const tokens = [(await r.prefill(prefillEntry('alone', prompt))).tokens[0]!]
      const logits: Float32Array[] = []
      for (let s = 0; s < steps; s++) {
        const d = await r.decode(['alone'])
        tokens.push(d.tokens[0]!)
        logits.push(rowLogits(d, 0).slice())
      }
      return { tokens, logits }
    }

    t.test('(a) KV-cache decode gives the logits of a full recompute', async (t) => {
      const runner = newRunner()
      const seq = [...PROMPTS[0]!]
      const first = await runner.prefill(prefillEntry('a', seq))
      seq.push(first.tokens[0]!)
      let worst = 0
      for (let step = 0; step < 12; step++) {
        const d = await runner.decode(['a'])
        const full = await recompute(seq)
        worst = Math.max(worst, maxAbsDiff(rowLogits(d, 0), full))
        const tokens = d.tokens
        seq.push(tokens[0]!)
      }
      t.ok(worst < TOLERANCE, `max |Δlogit| over 12 steps = ${worst.toExponential(2)} < ${TOLERANCE}`)
    })

    t.test('(b) sequences decoded together give what each gives alone', async (t) => {
      const STEPS = 10
      const solo: Alone[] = []
      for (const p of PROMPTS) solo.push(await alone(p, STEPS))
      const batch = newRunner()
      const together: number[][] = PROMPTS.map(() => [])
      for (const [i, p] of PROMPTS.entries()) together[i]!.push((await batch.prefill(prefillEntry(`s${i}`, p))).tokens[0]!)
      const rids = PROMPTS.map((_, i) => `s${i}`)
      let worst = 0
      for (let s = 0; s < STEPS; s++) {
        const d = await batch.decode(rids)
        for (let i = 0; i < rids.length; i++) {
          together[i]!.push(d.tokens[i]!)
          worst = Math.max(worst, maxAbsDiff(rowLogits(d, i), solo[i]!.logits[s]!))
        }
      }
      t.same(
        together,
        solo.map((x) => x.tokens),
        'greedy tokens identical, row by row',
      )
      t.ok(worst < TOLERANCE, `max |Δlogit| batched vs alone = ${worst.toExponential(2)}`)
    })

    t.test('a sequence joining a running batch leaves the others unchanged', async (t) => {
      const r = newRunner()
      await r.prefill(prefillEntry('a', PROMPTS[0]!))
      for (let s = 0; s < 3; s++) await r.decode(['a'])
      await r.prefill(prefillEntry('b', PROMPTS[1]!))
      const joint = await r.decode(['a', 'b'])
      const ref = newRunner()
      await ref.prefill(prefillEntry('a', PROMPTS[0]!))
      for (let s = 0; s < 3; s++) await ref.decode(['a'])
      const solo = await ref.decode(['a'])
      t.ok(maxAbsDiff(rowLogits(joint, 0), rowLogits(solo, 0)) < TOLERANCE)
      t.equal(joint.tokens[0], solo.tokens[0])
      r.release('a')
      t.notOk(r.has('a'), 'released sequences leave the cache')
      t.equal(r.size, 1)
    })

    t.test('chunked prefill equals one-shot prefill', async (t) => {
      const prompt = PROMPTS[2]!
      const one = await recompute(prompt)
      const r = newRunner()
      await r.prefill(prefillEntry('c', prompt.slice(0, 3), 0, false))
      await r.prefill(prefillEntry('c', prompt.slice(3, 5), 3, false))
      const last = await r.prefill(prefillEntry('c', prompt.slice(5), 5, true))
      t.ok(maxAbsDiff(last.logits, one) < TOLERANCE)
      t.equal(r.cachedTokens(), prompt.length)
      await t.rejects(r.prefill(prefillEntry('c', [1], 2, true)), { message: /holds 7 tokens, chunk starts at 2/ }, 'a chunk at the wrong position is refused')
    })

    t.test('the resident batch: joins, leaves and skipped rows give what each sequence gives alone', async (t) => {
      // Each sequence alone, greedy, 14 decode steps: its tokens and logits.
      const STEPS = 14
      const solo: Alone[] = []
      for (const p of PROMPTS) solo.push(await alone(p, STEPS))
      // A schedule over steps: who joins (prefilled before the step), who is in the step, who leaves after it.
      const r = newRunner()
      const got = new Map<number, number[]>()
      const done = new Map<number, number>() // decode steps run per sequence
      const join = async (i: number): Promise<void> => {
        got.set(i, [(await r.prefill(prefillEntry(`s${i}`, PROMPTS[i]!))).tokens[0]!])
        done.set(i, 0)
      }
      let worst = 0
      const step = async (members: number[]): Promise<void> => {
        const d = await r.decode(members.map((i) => `s${i}`))
        members.forEach((i, row) => {
          const k = done.get(i)!
          got.get(i)!.push(d.tokens[row]!)
          worst = Math.max(worst, maxAbsDiff(rowLogits(d, row), solo[i]!.logits[k]!))
          done.set(i, k + 1)
        })
      }
      await join(0)
      await join(1)
      for (let s = 0; s < 3; s++) await step([0, 1]) // steady: resident
      await join(2)
      for (let s = 0; s < 3; s++) await step([0, 1, 2]) // a join, then steady
      await step([2, 0]) // 1 skipped (lives on), order changed
      await step([2, 0])
      r.release('s0') // 0 leaves
      await join(3)
      for (let s = 0; s < 2; s++) await step([1, 2, 3]) // 1 comes back from its own cache
      r.release('s2')
      for (let s = 0; s < 2; s++) await step([3, 1])
      t.equal(r.cachedTokens(), PROMPTS[1]!.length + done.get(1)! + (PROMPTS[3]!.length + done.get(3)!), 'cached tokens count resident ones')
      for (const [i, tokens] of got) t.same(tokens, solo[i]!.tokens.slice(0, tokens.length), `s${i}: greedy tokens as alone`)
      t.ok(worst < TOLERANCE, `max |Δlogit| vs alone = ${worst.toExponential(2)}`)
    })

    t.test('continuous batching churn: joiners take freed rows in place, and every sequence still gets what it gets alone', async (t) => {
      // 12 sequences over 60 steps, joining and leaving at random (seeded): free rows, in-place joins,
      // compactions when rows are sparse or padding grows, and order changes all happen.
      const N = 12
      const prompts = Array.from({ length: N }, (_, i) => Array.from({ length: 1 + ((i * 7) % 23) }, (_, j) => (i * 131 + j * 17) % 1000))
      const lengths = Array.from({ length: N }, (_, i) => 6 + ((i * 11) % 30))
      const solo: Alone[] = []
      for (const [i, p] of prompts.entries()) solo.push(await alone(p, lengths[i]!))
      let seed = 7
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
      const r = newRunner()
      const got = prompts.map(() => [] as number[])
      const active: number[] = []
      let next = 0
      let worst = 0
      let inPlace = 0
      for (let step = 0; step < 60 && (next < N || active.length > 0); step++) {
        while (next < N && active.length < 6 && rand() < 0.5) {
          got[next]!.push((await r.prefill(prefillEntry(`s${next}`, prompts[next]!))).tokens[0]!)
          active.push(next++)
        }
        if (active.length === 0) continue
        // Shuffled: the caller's order is not the batch's.
        const members = [...active].sort(() => rand() - 0.5)
        const before = new Map(members.map((i) => [i, got[i]!.length]))
        const d = await r.decode(members.map((i) => `s${i}`))
        members.forEach((i, k) => {
          worst = Math.max(worst, maxAbsDiff(rowLogits(d, k), solo[i]!.logits[before.get(i)! - 1]!))
          got[i]!.push(d.tokens[k]!)
        })
        if (new Set(d.rows).size !== members.length) t.fail('two sequences share a row')
        if ([...d.rows].some((row) => row >= members.length)) inPlace++
        for (const i of [...active]) {
          if (got[i]!.length > lengths[i]!) {
            r.release(`s${i}`)
            active.splice(active.indexOf(i), 1)
          }
        }
      }
      t.equal(next, N, 'every sequence ran')
      for (const [i, tokens] of got.entries()) t.same(tokens, solo[i]!.tokens, `s${i}: greedy tokens as alone`)
      t.ok(worst < TOLERANCE, `max |Δlogit| vs alone = ${worst.toExponential(2)}`)
      t.ok(inPlace > 0, `steps run with free rows in the batch (${inPlace}): joins and leaves did not regather it`)
      t.equal(r.size, 0)
    })

    t.test('a joiner takes the row its predecessor freed', async (t) => {
      const r = newRunner()
      for (const i of [0, 1, 2, 3]) await r.prefill(prefillEntry(`s${i}`, PROMPTS[i]!))
      const first = await r.decode(['s0', 's1', 's2', 's3'])
      t.same([...first.rows], [0, 1, 2, 3])
      r.release('s1')
      await r.prefill(prefillEntry('s4', PROMPTS[4]!))
      const d = await r.decode(['s3', 's4', 's0', 's2'])
      t.same([...d.rows], [3, 1, 0, 2], 's4 in row 1; the others keep their rows')
    })

    t.test('a decoding sequence prefilled again continues from its resident tokens', async (t) => {
      const r = newRunner()
      const seq = [...PROMPTS[0]!]
      seq.push((await r.prefill(prefillEntry('a', seq))).tokens[0]!)
      await r.prefill(prefillEntry('b', PROMPTS[1]!))
      for (let s = 0; s < 3; s++) seq.push((await r.decode(['a', 'b'])).tokens[0]!)
      // The last sampled token and two more enter as a prompt chunk; then decode goes on.
      const extra = [seq.pop()!, 17, 29]
      const chunk = await r.prefill(prefillEntry('a', extra, seq.length, true))
      seq.push(...extra)
      t.ok(maxAbsDiff(chunk.logits, await recompute(seq)) < TOLERANCE, 'chunk after decode = recompute')
      seq.push(chunk.tokens[0]!)
      const d = await r.decode(['a', 'b'])
      t.ok(maxAbsDiff(rowLogits(d, 0), await recompute(seq)) < TOLERANCE, 'decode after the chunk = recompute')
    })

    t.test('prefills started together (not awaited one by one) each get their own inputs', async (t) => {
      const r = newRunner()
      const [a, b] = await Promise.all([r.prefill(prefillEntry('a', PROMPTS[0]!)), r.prefill(prefillEntry('b', PROMPTS[2]!))])
      t.ok(maxAbsDiff(a.logits, await recompute(PROMPTS[0]!)) < TOLERANCE, 'first prefill = recompute')
      t.ok(maxAbsDiff(b.logits, await recompute(PROMPTS[2]!)) < TOLERANCE, 'second prefill = recompute')
    })
  })
}

t.test('the fused graph decodes what the file graph decodes, its buffers grown past their first capacity', async (t) => {
  const [file, fused] = opened.map((o) => o.runner)
  const [a, b] = [new ModelRunner(file!.session, info), new FusedRunner(fused!.session, info)]
  const rids = PROMPTS.map((_, i) => `s${i}`)
  const got: number[][] = [[], []]
  for (const [i, p] of PROMPTS.entries()) {
    got[0]!.push((await a.prefill(prefillEntry(rids[i]!, p))).tokens[0]!)
    got[1]!.push((await b.prefill(prefillEntry(rids[i]!, p))).tokens[0]!)
  }
  let worst = 0
  // 48 steps: past decodeCapacity(7) = 40 slots, so the resident buffers are gathered anew once.
  for (let s = 0; s < 48; s++) {
    const [x, y] = [await a.decode(rids), await b.decode(rids)]
    for (let i = 0; i < rids.length; i++) worst = Math.max(worst, maxAbsDiff(rowLogits(x, i), rowLogits(y, i)))
    got[0]!.push(...x.tokens)
    got[1]!.push(...y.tokens)
  }
  t.same(got[1], got[0], 'greedy tokens equal')
  t.ok(worst < 1e-4, `max |Δlogit| fused vs file = ${worst.toExponential(2)}`)
  t.equal(decodeCapacity(7), 40)
})

t.test('auto picks the fused graph for the embedded model; fused refuses a file without its weights', async (t) => {
  const log = pino({ level: 'silent' })
  const cpu = { intraOp: 1, spinning: false, memArena: false }
  const auto = await openModelRunner(info, 'auto', { device: 'cpu', cpu, log })
  t.equal(auto.graph, 'fused')
  await auto.close()
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-fused-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(info.dir, f), join(dir, f))
  // A graph without spanserve's per-projection initializer names.
  writeFileSync(
    join(dir, 'model.onnx'),
    Buffer.from(serializeModel(onnx.ModelProto.create({ irVersion: 8, producerName: 'other', opsetImport: [{ domain: '', version: 17 }], graph: { name: 'empty' } }))),
  )
  await t.rejects(openModelRunner(readModelInfo(dir), 'fused', { device: 'cpu', cpu, log }), { name: 'ModelLoadError', message: /model\.embed_tokens\.weight|model\.layers\.0/ })
})

t.test('--quantization int8 on either graph: every weight MatMul rewritten, the prompt read as fp32 reads it', async (t) => {
  const { quantizeMatMuls } = await import('../../src/model/quantize.ts')
  const log = pino({ level: 'silent' })
  const cpu = { intraOp: 1, spinning: false, memArena: false }
  const prompt = 'Once upon a time there was a little girl'.split('').map((c) => c.charCodeAt(0) + 200)
  const top = (l: Float32Array): number => l.indexOf(Math.max(...l))
  for (const graph of ['file', 'fused'] as const) {
    let replaced = 0
    const q = await openModelRunner(info, graph, { device: 'cpu', cpu, log, transform: (m) => void (replaced = quantizeMatMuls(m, 8)) })
    // 7 per layer (q, k, v, o, gate, up, down; fused QKV and gate/up as one each) and the LM head.
    t.equal(replaced, graph === 'file' ? 7 * info.numLayers + 1 : 4 * info.numLayers + 1, `${graph}: the weight MatMuls are MatMulNBits`)
    const fp32 = opened.find((o) => o.graph === graph)!
    const a = await q.runner.prefill(prefillEntry('q', prompt))
    const { session } = fp32.runner as ModelRunner | FusedRunner
    const b = await (graph === 'fused' ? new FusedRunner(session, info) : new ModelRunner(session, info)).prefill(prefillEntry('f', prompt))
    t.equal(top(a.logits), top(b.logits), `${graph}: the same next token`)
    t.ok(maxAbsDiff(a.logits, b.logits) < 0.5, `${graph}: logits within 0.5 (${maxAbsDiff(a.logits, b.logits).toFixed(3)})`)
    await q.close()
  }
})

t.test('top-k / top-p sampling draws what a full sort of the vocabulary draws', async (t) => {
  const { FullSortSampler, fakeLogits, CASES } = await import('../../harness/sampling.ts')
  const { Sampler } = await import('../../src/worker/sampler.ts')
  for (const vocab of [1024, 32000]) {
    const logits = Array.from({ length: 4 }, (_, i) => fakeLogits(vocab, 1 + i))
    // Ties at the top-k boundary: a block of equal logits.
    logits[3]!.fill(5, 100, 200)
    for (const c of [...CASES, { name: 'T=1 top_k=150 (ties)', params: { temperature: 1, topK: 150, topP: 1 } }]) {
      for (const seed of [1, 2, 3]) {
        const a = new FullSortSampler({ ...c.params, seed })
        const b = new Sampler({ ...c.params, seed })
        const x: number[] = []
        const y: number[] = []
        for (let d = 0; d < (vocab > 2000 ? 8 : 40); d++) {
          x.push(a.sample(logits[d % 4]!, 0, vocab))
          y.push(b.sample(logits[d % 4]!, 0, vocab))
        }
        t.same(y, x, `vocab ${vocab}, ${c.name}, seed ${seed}`)
      }
    }
  }
})
