/**
 * Decode-step cost of tensor parallelism against the unsharded runner, in one run:
 *   node --import tsx bench/tp-step.ts [--preset default] [--tp 2] [--batches 1,16] [--steps 40]
 * Every configuration runs in its own processes (one per rank, as the server runs them), one after
 * the other: tp 1 (ModelRunner on model.onnx), tp 1 segmented (TpModelRunner, one rank: what
 * splitting the graph costs), and tp N (N rank processes over ZeroMQ ipc://). Prints one JSON line
 * per configuration and batch size: median decode step ms, all-reduce ms per step, RSS after load.
 */
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import * as ort from 'onnxruntime-node'
import { ensureModel } from '../src/model/build.ts'
import { readModelInfo } from '../src/model/load.ts'
import { isPresetName } from '../src/model/presets.ts'
import { ensureShards } from '../src/model/tp/shard-cache.ts'
import type { SamplingParams } from '../src/ipc/messages.ts'
import { ModelRunner } from '../src/worker/runner.ts'
import { ZmqAllReduce } from '../src/worker/tp/collective.ts'
import { TpModelRunner } from '../src/worker/tp/runner.ts'
import { openRankSegments, segmentSessionOptions } from '../src/worker/tp/segments.ts'
import { median } from './stats.ts'

const { values: args } = parseArgs({
  options: {
    preset: { type: 'string', default: 'default' },
    tp: { type: 'string', default: '2' },
    batches: { type: 'string', default: '1,16' },
    steps: { type: 'string', default: '40' },
    threads: { type: 'string', default: '0' },
    // ONNX Runtime's pool threads spin after each run; with one session per segment, the spinning
    // pool of the last segment competes with the next one's. 'off' is what segment sessions need.
    spin: { type: 'string', default: 'off' },
    // Child roles (set by the parent).
    role: { type: 'string' },
    dir: { type: 'string' },
    rank: { type: 'string', default: '0' },
    addresses: { type: 'string', default: '' },
  },
})

interface Runner {
  prefill: ModelRunner['prefill']
  decode(rids: readonly string[], inputs?: Int32Array): Promise<{ tokens: Int32Array; allReduceMs?: number }>
  release(rid: string): void
}

const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0, seed: null }
const WARMUP = 5

/** Same calls on every rank: B prompts of 32 tokens, then timed decode steps on fixed inputs. */
async function drive(runner: Runner, batch: number, steps: number, vocab: number): Promise<{ stepMs: number; allReduceMs: number }> {
  const rids = Array.from({ length: batch }, (_, i) => `b${batch}-${i}`)
  for (const [i, rid] of rids.entries()) {
    const tokens = Int32Array.from({ length: 32 }, (_, k) => (i * 31 + k * 7) % vocab)
    await runner.prefill({ rid, trace: null, tokens, start: 0, last: true, sampling: greedy })
  }
  const stepMs: number[] = []
  const reduceMs: number[] = []
  for (let s = 0; s < WARMUP + steps; s++) {
    const inputs = Int32Array.from(rids, (_, i) => (s * 13 + i) % vocab)
    const t0 = performance.now()
    const out = await runner.decode(rids, inputs)
    if (s >= WARMUP) {
      stepMs.push(performance.now() - t0)
      reduceMs.push(out.allReduceMs ?? 0)
    }
  }
  for (const rid of rids) runner.release(rid)
  return { stepMs: median(stepMs), allReduceMs: median(reduceMs) }
}

async function child(): Promise<void> {
  const threads = Number(args.threads)
  const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', executionProviders: ['cpu'], ...(threads > 0 ? { intraOpNumThreads: threads } : {}) }
  const options = args.spin === 'off' ? segmentSessionOptions(base) : base
  const create = (m: string | Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(m as string, options)
  let runner: Runner
  let vocab: number
  let close = (): void => {}
  if (args.role === 'reduce') {
    // The communication floor: the all-reduces of a decode step (2 per layer) with no compute.
    const collective = await ZmqAllReduce.open({ rank: Number(args.rank), addresses: args.addresses!.split(',') })
    const { hiddenSize: d, numLayers } = (await import('../src/model/tp/shard-cache.ts')).readManifest(args.dir!).spec
    for (const batch of args.batches!.split(',').map(Number)) {
      const data = new Float32Array(batch * d).fill(1)
      const ms: number[] = []
      for (let s = 0; s < WARMUP + Number(args.steps); s++) {
        const t0 = performance.now()
        for (let k = 0; k < 2 * numLayers; k++) await collective.allReduce(batch * 1e6 + s, k, data)
        if (s >= WARMUP) ms.push(performance.now() - t0)
      }
      process.send!({ batch, stepMs: median(ms), allReduceMs: median(ms), rssMb: process.memoryUsage().rss / 2 ** 20 })
    }
    collective.close()
    return
  }
  if (args.role === 'whole') {
    const info = readModelInfo(args.dir!)
    runner = new ModelRunner(await create(info.onnxPath), info)
    vocab = info.vocabSize
  } else {
    const addresses = args.addresses!.split(',')
    const collective = await ZmqAllReduce.open({ rank: Number(args.rank), addresses })
    const segments = await openRankSegments(args.dir!, create)
    runner = new TpModelRunner(segments, collective)
    vocab = segments.manifest.spec.vocabSize
    close = () => collective.close()
  }
  const rssMb = process.memoryUsage().rss / 2 ** 20
  for (const batch of args.batches!.split(',').map(Number)) {
    const r = await drive(runner, batch, Number(args.steps), vocab)
    process.send!({ batch, ...r, rssMb })
  }
  close()
}

interface Row {
  config: string
  batch: number
  stepMs: number
  allReduceMs: number
  rssMb: number[]
}

/** Starts one process per rank and gathers rank 0's timings with every rank's RSS. */
async function run(config: string, ranks: { role: string; dir: string; rank: number; addresses: string; threads: number }[]): Promise<Row[]> {
  const results = ranks.map(() => [] as { batch: number; stepMs: number; allReduceMs: number; rssMb: number }[])
  await Promise.all(
    ranks.map(
      (r, i) =>
        new Promise<void>((resolve, reject) => {
          const argv = [
            '--role',
            r.role,
            '--dir',
            r.dir,
            '--rank',
            String(r.rank),
            '--addresses',
            r.addresses,
            '--threads',
            String(r.threads),
            '--batches',
            args.batches!,
            '--steps',
            args.steps!,
            '--spin',
            args.spin!,
          ]
          const proc = fork(new URL(import.meta.url).pathname, argv, { execArgv: ['--import', 'tsx'] })
          proc.on('message', (m) => results[i]!.push(m as (typeof results)[number][number]))
          proc.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${config} rank ${r.rank} exited with ${code}`))))
        }),
    ),
  )
  return results[0]!.map((r0, k) => ({ config, batch: r0.batch, stepMs: r0.stepMs, allReduceMs: r0.allReduceMs, rssMb: results.map((rs) => Math.round(rs[k]!.rssMb)) }))
}

async function main(): Promise<void> {
  const preset = args.preset!
  if (!isPresetName(preset)) throw new Error(`unknown preset ${preset}`)
  const tp = Number(args.tp)
  const cores = availableParallelism()
  const modelDir = await ensureModel({ preset, log: console.error })
  const one = await ensureShards(modelDir, 1, { log: console.error })
  const group = await ensureShards(modelDir, tp, { log: console.error })
  const runDir = mkdtempSync(join(tmpdir(), 'spanserve-tp-bench-'))
  const addresses = Array.from({ length: tp }, (_, r) => `ipc://${join(runDir, `rank${r}.sock`)}`).join(',')
  const perRank = Math.max(1, Math.floor(cores / tp))
  try {
    const rows = [
      ...(await run(`tp1 whole (${cores} threads)`, [{ role: 'whole', dir: modelDir, rank: 0, addresses: '', threads: cores }])),
      ...(await run(`tp1 whole (${perRank} threads)`, [{ role: 'whole', dir: modelDir, rank: 0, addresses: '', threads: perRank }])),
      ...(await run(`tp1 segmented (${cores} threads)`, [{ role: 'rank', dir: one.rankDir(0), rank: 0, addresses: 'ipc://unused', threads: cores }])),
      ...(await run(`tp1 segmented (${perRank} threads)`, [{ role: 'rank', dir: one.rankDir(0), rank: 0, addresses: 'ipc://unused', threads: perRank }])),
      ...(await run(
        `tp${tp} (${perRank} threads per rank)`,
        Array.from({ length: tp }, (_, r) => ({ role: 'rank', dir: group.rankDir(r), rank: r, addresses, threads: perRank })),
      )),
      ...(await run(
        `tp${tp} all-reduces only`,
        Array.from({ length: tp }, (_, r) => ({ role: 'reduce', dir: group.rankDir(r), rank: r, addresses, threads: perRank })),
      )),
    ]
    for (const row of rows) console.log(JSON.stringify({ preset, ...row, stepMs: +row.stepMs.toFixed(3), allReduceMs: +row.allReduceMs.toFixed(3) }))
  } finally {
    rmSync(runDir, { recursive: true, force: true })
  }
}

await (args.role ? child() : main())
