/**
 * The limit: the worker's own ModelRunner driven in this process, with no HTTP, no ZeroMQ and no
 * scheduler. Concurrency N means N sequences prefilled one after another (as the worker does within
 * a step) and then decoded together, one session run per step, until each has max_tokens tokens.
 * What it measures is what ONNX Runtime and the runner's KV handling give on this machine. The runner
 * is opened as the worker opens it (src/worker/model-graph.ts, the server's default --model-graph
 * auto), its MatMuls quantized as --quantization quantizes them where a quantization is given.
 */
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createLogger } from '../../src/logging.ts'
import { checkSignature, readModelInfo } from '../../src/model/load.ts'
import { quantizationBits, quantizeMatMuls, type Quantization } from '../../src/model/quantize.ts'
import { openModelRunner } from '../../src/worker/model-graph.ts'
import type { ModelRunner } from '../../src/worker/runner.ts'
import { openSession, type CpuOptions } from '../../src/worker/session.ts'
import { percentile, summarise, type LevelResult, type RequestSample } from '../stats.ts'

const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: null }

/** The runner calls the limit makes, which every runner of the worker answers. */
type Runner = Pick<ModelRunner, 'prefill' | 'decode' | 'release'>

export interface LimitOpenOptions {
  /** Another checkout whose src/worker/runner.ts to drive on the ONNX file (bench --base); default this one's worker. */
  root?: string
  /** Quantize the MatMuls as the server's --quantization does (int8, int4); default fp32. */
  quantization?: Quantization
}

export class LimitRunner {
  private seq = 0
  private constructor(
    readonly runner: Runner,
    private readonly release: () => Promise<void>,
  ) {}

  static async open(modelDir: string, cpu: CpuOptions, opts: LimitOpenOptions = {}): Promise<LimitRunner> {
    const info = readModelInfo(modelDir)
    const log = createLogger('silent', {})
    if (opts.root) {
      // An older checkout may predate model-graph.ts: its ModelRunner on the file, as its worker ran it.
      if (opts.quantization) throw new Error('the --base limit runs fp32 only')
      const { session } = await openSession(info.onnxPath, 'cpu', cpu, log)
      checkSignature(info, session.inputNames, session.outputNames)
      const { ModelRunner } = (await import(pathToFileURL(join(opts.root, 'src/worker/runner.ts')).href)) as { ModelRunner: typeof import('../../src/worker/runner.ts').ModelRunner }
      return new LimitRunner(new ModelRunner(session, info), () => session.release())
    }
    const bits = opts.quantization ? quantizationBits(opts.quantization) : null
    const { runner, close } = await openModelRunner(info, 'auto', { device: 'cpu', cpu, log, transform: bits ? (m) => void quantizeMatMuls(m, bits) : undefined })
    return new LimitRunner(runner, close)
  }

  /** One round: N prompts prefilled, then decoded together to maxTokens; one sample per sequence. */
  async round(prompts: readonly number[][], maxTokens: number): Promise<{ samples: RequestSample[]; prefillMs: number[]; tokens: number[][] }> {
    const t0 = performance.now()
    const rids = prompts.map(() => `limit-${this.seq++}`)
    const firstAt: number[] = []
    const prefillMs: number[] = []
    const tokens: number[][] = []
    for (let i = 0; i < prompts.length; i++) {
      const p0 = performance.now()
      const { tokens: first } = await this.runner.prefill({ rid: rids[i]!, trace: null, tokens: Int32Array.from(prompts[i]!), start: 0, last: true, sampling: GREEDY })
      const p1 = performance.now()
      prefillMs.push(p1 - p0)
      firstAt.push(p1 - t0)
      tokens.push([first[0]!])
    }
    const gaps: number[] = []
    let last = performance.now()
    for (let step = 1; step < maxTokens; step++) {
      const { tokens: next } = await this.runner.decode(rids)
      const now = performance.now()
      gaps.push(now - last)
      last = now
      for (let i = 0; i < rids.length; i++) tokens[i]!.push(next[i]!)
    }
    const e2e = performance.now() - t0
    for (const rid of rids) this.runner.release(rid)
    const samples = rids.map((_, i) => ({ ttftMs: firstAt[i]!, e2eMs: e2e, tokens: maxTokens, itlMs: gaps }))
    return { samples, prefillMs, tokens }
  }

  close(): Promise<void> {
    return this.release()
  }
}

/** One concurrency level of the limit: `rounds` rounds of N sequences, prompts taken from `from` on. */
export async function limitLevel(limit: LimitRunner, prompts: readonly number[][], maxTokens: number, n: number, rounds: number, from: number): Promise<LevelResult> {
  const samples: RequestSample[] = []
  const prefill: number[] = []
  const t0 = performance.now()
  for (let r = 0; r < rounds; r++) {
    const batch = Array.from({ length: n }, (_, i) => prompts[(from + r * n + i) % prompts.length]!)
    const out = await limit.round(batch, maxTokens)
    samples.push(...out.samples)
    prefill.push(...out.prefillMs)
  }
  return summarise(n, samples, performance.now() - t0, { prefillP50: percentile(prefill, 50) })
}
