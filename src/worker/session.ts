/**
 * ONNX Runtime session creation with the execution provider the operator asked for. CUDA is tried
 * explicitly and CPU taken on failure: onnxruntime-node throws at create when the CUDA libraries are
 * absent rather than falling back itself.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import * as ort from 'onnxruntime-node'
import type { Logger } from '../logging.ts'

/**
 * Whether onnxruntime-node's CUDA provider library was installed (see README "GPU"). Without it,
 * asking for CUDA only prints an error from ONNX Runtime's native code before failing.
 */
function cudaProviderInstalled(): boolean {
  const pkg = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'))
  return existsSync(join(pkg, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'))
}

export type Device = 'auto' | 'cpu' | 'cuda'

export interface OpenSession {
  session: ort.InferenceSession
  provider: 'cuda' | 'cpu'
}

export interface CpuOptions {
  /** 0: ONNX Runtime's choice (one per core). */
  intraOp: number
  /** Whether idle intra-op threads spin (ONNX Runtime's default) rather than sleep. */
  spinning: boolean
  /**
   * Whether ONNX Runtime keeps its CPU memory arena and memory patterns (its defaults). Off by
   * default here: shapes change every step (batch rows, KV length), the arena grows by regions of
   * doubling size that it never returns, and patterns are planned per shape, so a worker's RSS
   * jumped by hundreds of MiB at random under load. Off, each tensor is malloc'd and freed (see
   * WORKER_MALLOC_ENV), for a few percent of tokens/s (docs/benchmarks.md).
   */
  memArena: boolean
}

/** Session options for the CPU: thread pool and memory. */
export function cpuOptions(cpu: CpuOptions): ort.InferenceSession.SessionOptions {
  return {
    ...(cpu.intraOp > 0 ? { intraOpNumThreads: cpu.intraOp } : {}),
    enableCpuMemArena: cpu.memArena,
    enableMemPattern: cpu.memArena,
    extra: { session: { intra_op: { allow_spinning: cpu.spinning ? '1' : '0' } } },
  }
}

/** `model`: the ONNX file's path, or a graph built in memory (model-graph.ts). */
export async function openSession(model: string | Uint8Array, device: Device, cpu: CpuOptions, log: Logger): Promise<OpenSession> {
  const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', ...cpuOptions(cpu) }
  const create = (options: ort.InferenceSession.SessionOptions) => (typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options))
  if (device === 'auto' && !cudaProviderInstalled()) {
    log.info({ provider: 'cpu' }, 'CUDA execution provider not installed, ONNX Runtime session on CPU')
  } else if (device !== 'cpu') {
    try {
      const session = await create({ ...base, executionProviders: ['cuda'] })
      log.info({ provider: 'cuda' }, 'ONNX Runtime session on CUDA')
      return { session, provider: 'cuda' }
    } catch (err) {
      if (device === 'cuda') throw new Error(`--device cuda: the CUDA execution provider is not available (${(err as Error).message.split('\n')[0]}); see README "GPU"`)
      log.info({ provider: 'cpu', reason: (err as Error).message.split('\n')[0] }, 'CUDA not available, ONNX Runtime session on CPU')
    }
  }
  const session = await create({ ...base, executionProviders: ['cpu'] })
  if (device === 'cpu') log.info({ provider: 'cpu' }, 'ONNX Runtime session on CPU')
  return { session, provider: 'cpu' }
}
