/**
 * The limit: the worker's own ModelRunner driven in this process, with no HTTP, no ZeroMQ and no
 * scheduler. Concurrency N means N sequences prefilled one after another (as the worker does within
 * a step) and then decoded together, one session run per step, until each has max_tokens tokens.
 * What it measures is what ONNX Runtime and the runner's KV handling give on this machine.
 */
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createLogger } from '../../src/logging.ts'
import { checkSignature, readModelInfo } from '../../src/model/load.ts'
import { ModelRunner } from '../../src/worker/runner.ts'
import { openSession, type CpuOptions } from '../../src/worker/session.ts'
import { percentile, summarise, type LevelResult, type RequestSample } from '../stats.ts'

const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: null }

export class LimitRunner {
  private seq = 0
  private constructor(readonly runner: ModelRunner) {}

  /** `root`: another checkout whose src/worker/runner.ts to drive (bench --base); default this one's. */
  static async open(modelDir: string, cpu: CpuOptions, root?: string): Promise<LimitRunner> {
    const info = readModelInfo(modelDir)
    const { session } = await openSession(info.onnxPath, 'cpu', cpu, createLogger('silent', {}))
    checkSignature(info, session.inputNames, session.outputNames)
    const Runner = root ? ((await import(pathToFileURL(join(root, 'src/worker/runner.ts')).href)) as { ModelRunner: typeof ModelRunner }).ModelRunner : ModelRunner
    return new LimitRunner(new Runner(session, info))
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
    return this.runner.session.release()
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
