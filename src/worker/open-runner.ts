/**
 * The worker's runner for its rank: the whole model in one ONNX Runtime session at --tp-size 1, or
 * this rank's shard (segment sessions and an all-reduce with the other ranks of its TP group).
 */
import { readdirSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { quantizationBits, quantizeMatMuls } from '../model/quantize.ts'
import { ensureShards } from '../model/tp/shard-cache.ts'
import * as ort from 'onnxruntime-node'
import type { ChildContext } from '../process/child.ts'
import { openModelRunner } from './model-graph.ts'
import type { StepRunner } from './step-runner.ts'
import { cpuOptions, type CpuOptions } from './session.ts'
import { openTpRunner } from './tp/open.ts'
import { segmentSessionOptions } from './tp/segments.ts'

export interface OpenRunner {
  runner: StepRunner
  provider: string
  close(): Promise<void>
}

export async function openRunner(ctx: ChildContext): Promise<OpenRunner> {
  const { config, model, dpRank, tpRank, log } = ctx
  const cpu = (intraOp: number): CpuOptions => ({ intraOp, spinning: config.intraOpSpinning, memArena: config.cpuMemArena })
  if (config.tpSize === 1) {
    const quantization = config.quantization
    const transform =
      quantization === 'none'
        ? undefined
        : (m: Parameters<typeof quantizeMatMuls>[0]): void => {
            const count = quantizeMatMuls(m, quantizationBits(quantization))
            log.info({ quantization, matmuls: count }, 'MatMul weights quantized at load')
          }
    const { runner, provider, close } = await openModelRunner(model, config.modelGraph, { device: config.device, cpu: cpu(config.intraOpThreads), log, transform })
    return { runner, provider, close }
  }
  // One GPU per rank with --device cuda; on CPU the cores are shared out between the ranks.
  const provider = config.device === 'cuda' ? 'cuda' : 'cpu'
  const threads = config.intraOpThreads > 0 ? config.intraOpThreads : Math.max(1, Math.floor(availableParallelism() / config.tpSize))
  const ep: ort.InferenceSession.ExecutionProviderConfig = provider === 'cuda' ? { name: 'cuda', deviceId: tpRank } : 'cpu'
  const { runner, close } = await openTpRunner({
    modelDir: model.dir,
    tpSize: config.tpSize,
    rank: tpRank,
    addresses: ctx.endpoints.collectives[dpRank]!,
    create: (m) => ort.InferenceSession.create(m as string, segmentSessionOptions({ executionProviders: [ep], ...cpuOptions(cpu(threads)) })),
    log: (line) => log.info(line),
  })
  // What this rank loaded against the whole model: the operator can see each rank holds a shard.
  const rankDir = (await ensureShards(model.dir, config.tpSize)).rankDir(tpRank)
  const weightsBytes = readdirSync(rankDir).reduce((sum, f) => sum + statSync(join(rankDir, f)).size, 0)
  log.info({ provider, tp_size: config.tpSize, threads, weights_bytes: weightsBytes, model_bytes: statSync(model.onnxPath).size }, 'tensor-parallel rank ready')
  return { runner, provider, close }
}
