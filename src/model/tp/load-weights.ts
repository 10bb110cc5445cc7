// Reads a spanserve-built model back into LlamaSpec + LlamaWeights: the spec from config.json, the
// weights from model.onnx's initializers by name. Other graphs (Optimum exports) fuse, rename and
// transpose their weights, so they are refused with one clear error instead of guessed at.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import onnxProto from 'onnx-proto'
import { readModelInfo } from '../load.ts'
import { spanserveOnnxWeights } from '../spanserve-weights.ts'
import { validateSpec, type LlamaSpec, type LlamaWeights } from '../spec.ts'
import { TpModelFormatError } from './errors.ts'

const { onnx } = onnxProto

const NEEDS_SPANSERVE = 'tensor parallelism (--tp-size > 1) needs a spanserve-format model (the embedded model, or a directory spanserve built)'

function numberField(cfg: Record<string, unknown>, name: string, file: string): number {
  const v = cfg[name]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TpModelFormatError(`${file}: field "${name}" must be a number for ${NEEDS_SPANSERVE}`)
  return v
}

/** The full LlamaSpec of a model directory (readModelInfo's facts plus the MLP width, RoPE and norm constants). */
export function readLlamaSpec(dir: string): LlamaSpec {
  const info = readModelInfo(dir)
  const file = join(dir, 'config.json')
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  if (info.modelType !== 'llama') throw new TpModelFormatError(`${NEEDS_SPANSERVE}; ${dir} is a ${info.modelType} model`)
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) throw new TpModelFormatError(`${file}: rope_scaling is not supported by ${NEEDS_SPANSERVE}`)
  const spec: LlamaSpec = {
    hiddenSize: info.hiddenSize,
    numLayers: info.numLayers,
    numHeads: info.numHeads,
    numKvHeads: info.numKvHeads,
    headDim: info.headDim,
    intermediateSize: numberField(cfg, 'intermediate_size', file),
    vocabSize: info.vocabSize,
    maxPositions: info.maxPositions,
    ropeTheta: numberField(cfg, 'rope_theta', file),
    rmsNormEps: numberField(cfg, 'rms_norm_eps', file),
  }
  validateSpec(spec)
  return spec
}

/** Weights of a spanserve-built model.onnx; throws TpModelFormatError for any other graph. */
export function loadLlamaWeights(onnxPath: string, spec: LlamaSpec): LlamaWeights {
  const model = onnx.ModelProto.decode(readFileSync(onnxPath))
  if (model.producerName !== 'spanserve') {
    throw new TpModelFormatError(`${NEEDS_SPANSERVE}; ${onnxPath} was produced by "${model.producerName || 'an unknown exporter'}"`)
  }
  return spanserveOnnxWeights(model, onnxPath, spec, (problem) => new TpModelFormatError(`${NEEDS_SPANSERVE}; ${problem}`))
}
