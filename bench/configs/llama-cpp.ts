/**
 * The llama.cpp configurations: the preset's weights written as GGUF F32, Q8_0 or Q4_0 (bench/gguf/llama.ts) and
 * served by bench/llama-cpp-server.ts in its own process (as the spanserve server is), measured by
 * the same load client. Settings, and why they are llama.cpp's best here: docs/benchmarks.md, "llama.cpp".
 */
import { join } from 'node:path'
import { ROOT } from '../../harness/server.ts'
import type { PresetName } from '../../src/model/presets.ts'
import { JsonLineChild } from '../child-lines.ts'
import { ensureGguf, type GgufQuantization } from '../gguf/llama.ts'

/** Why llama.cpp cannot run here, or null when node-llama-cpp and its prebuilt binary load. */
export async function llamaCppUnavailable(): Promise<string | null> {
  try {
    const { getLlama } = await import('node-llama-cpp')
    // Loads the prebuilt addon for this platform (no build, no download) and lets it go again.
    const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false })
    await llama.dispose()
    return null
  } catch (err) {
    return `node-llama-cpp cannot load llama.cpp here: ${(err as Error).message.split('\n')[0]}`
  }
}

export interface LlamaCppOptions {
  preset: PresetName
  /** The GGUF's weight type: F32 (none), or Q8_0 / Q4_0 as llama-quantize writes them. */
  quantization: GgufQuantization
  /** Parallel slots (llama-server's -np): the highest concurrency of the run. */
  parallel: number
  /** Tokens per slot: prompt plus generated tokens must fit (llama-server's -c divided by -np). */
  ctxPerSlot: number
  /** llama-server's -t and -tb; 0: the adapter measures 1..cores threads and keeps the fastest for each. */
  threads: number
  log?: (line: string) => void
}

export async function startLlamaCpp(opts: LlamaCppOptions): Promise<{ url: string; pids(): Record<string, number>; stop(): Promise<void> }> {
  const gguf = await ensureGguf(opts.preset, { quantization: opts.quantization, log: opts.log })
  const args = ['--import', 'tsx', join(ROOT, 'bench/llama-cpp-server.ts'), gguf, '--parallel', String(opts.parallel), '--threads', String(opts.threads), '--ctx', String(opts.ctxPerSlot)]
  const child = JsonLineChild.start('llama.cpp server', args)
  try {
    const { port, threads, calibration, llamaServerLike } = await child.waitFor((l) => typeof l.port === 'number', 300_000)
    const byThreads = Object.entries((calibration ?? {}) as Record<string, number[]>).map(([t, [a, b]]) => `${t}: ${a!.toFixed(1)} / ${b!.toFixed(1)}`)
    const measured = calibration ? `; ms per decode step at batch 1 / ${opts.parallel} by threads: ${byThreads.join(', ')}` : ''
    const { one, many } = threads as { one: number; many: number }
    const batching = llamaServerLike ? 'batches in slot order' : 'node-llama-cpp has changed: batches in its own order, one thread count (bench/llama-cpp-batch.ts)'
    opts.log?.(`  llama.cpp: ${opts.parallel} slots, ${one} threads for one-token steps (-t), ${many} for larger batches (-tb), ${batching}${measured}`)
    return { url: `http://127.0.0.1:${String(port)}`, pids: () => ({ server: child.proc.pid! }), stop: () => child.stop() }
  } catch (err) {
    await child.stop()
    throw err
  }
}
