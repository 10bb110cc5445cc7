/**
 * Which graph serves a model in one session, and the runner that drives it: the fused graph
 * (src/model/fused-graph.ts, FusedRunner) built from the weights, or the ONNX file as it is (an
 * Optimum export, ModelRunner). The fused graph's weights come from a Hugging Face checkpoint
 * (safetensors of llama, qwen2, mistral: src/model/hf-weights.ts) or from the initializers of a
 * model.onnx spanserve wrote, so that a model built before the fused graph existed gets it too.
 * 'auto' takes the fused graph where it can and otherwise the file, logging why; 'fused' fails instead.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs'
import onnxProto from 'onnx-proto'
import type { Logger } from '../logging.ts'
import { ModelLoadError } from '../model/errors.ts'
import { buildFusedLlamaOnnx, serializeModel } from '../model/fused-graph.ts'
import { CHECKPOINT_MODEL_TYPES, checkpointFusedInputs, fusedSpec, type FusedInputs } from '../model/hf-weights.ts'
import { checkSignature, type ModelInfo } from '../model/load.ts'
import { hasSafetensors } from '../model/safetensors.ts'
import { spanserveMlpWidth, spanserveOnnxWeights } from '../model/spanserve-weights.ts'
import { FusedRunner } from './fused-runner.ts'
import { ModelRunner } from './runner.ts'
import { openSession, type CpuOptions, type Device } from './session.ts'

const { onnx } = onnxProto
type ModelProto = InstanceType<typeof onnx.ModelProto>

export type ModelGraph = 'auto' | 'fused' | 'file'

export interface ModelGraphOptions {
  device: Device
  cpu: CpuOptions
  log: Logger
  /** Rewrites the graph before its session opens (the quantizer); applied to whichever graph runs. */
  transform?: (model: ModelProto) => void
}

export interface OpenModelRunner {
  runner: ModelRunner | FusedRunner
  provider: 'cuda' | 'cpu'
  /** The graph that runs: 'auto' resolved. */
  graph: 'fused' | 'file'
  close(): Promise<void>
}

export async function openModelRunner(model: ModelInfo, graph: ModelGraph, opts: ModelGraphOptions): Promise<OpenModelRunner> {
  let notFused = ''
  if (graph !== 'file') {
    const started = performance.now()
    const found = graph === 'fused' ? fusedInputs(model) : tryFusedInputs(model)
    if ('spec' in found) {
      const proto = buildFusedLlamaOnnx(found.spec, found.weights)
      opts.transform?.(proto)
      const bytes = serializeModel(proto)
      const { session, provider } = await openSession(bytes, opts.device, opts.cpu, opts.log)
      opts.log.info({ graph: 'fused', weights: found.source, build_ms: Math.round(performance.now() - started), bytes: bytes.byteLength }, 'fused model graph built from the weights')
      return { runner: new FusedRunner(session, model), provider, graph: 'fused', close: () => session.release() }
    }
    notFused = found.reason
    opts.log.info({ graph: 'file', reason: notFused }, 'fused model graph not built')
  }
  if (model.onnxPath === '') {
    throw new ModelLoadError(`${model.dir} holds no ONNX decoder for --model-graph file${notFused ? `, and the fused graph cannot serve it: ${notFused}` : ''}`)
  }
  let source: string | Uint8Array = model.onnxPath
  if (opts.transform) {
    const proto = onnx.ModelProto.decode(readFileSync(model.onnxPath))
    opts.transform(proto)
    source = serializeModel(proto)
  }
  const { session, provider } = await openSession(source, opts.device, opts.cpu, opts.log)
  checkSignature(model, session.inputNames, session.outputNames)
  opts.log.info({ graph: 'file', path: model.onnxPath }, 'model graph from the ONNX file')
  return { runner: new ModelRunner(session, model), provider, graph: 'file', close: () => session.release() }
}

type Found = (FusedInputs & { source: 'checkpoint' | 'onnx' }) | { reason: string }

/**
 * The fused graph's inputs: from the safetensors checkpoint where the directory has one of a model
 * type it covers, else from spanserve's initializers in the ONNX file. Throws ModelLoadError saying
 * why not.
 */
function fusedInputs(model: ModelInfo): FusedInputs & { source: 'checkpoint' | 'onnx' } {
  if (CHECKPOINT_MODEL_TYPES.includes(model.modelType) && hasSafetensors(model.dir)) return { ...checkpointFusedInputs(model), source: 'checkpoint' }
  if (model.onnxPath === '') throw new ModelLoadError(`${model.dir}: --model-graph fused needs a ${CHECKPOINT_MODEL_TYPES.join(', ')} safetensors checkpoint or a model.onnx spanserve wrote`)
  const file = onnx.ModelProto.decode(readFileSync(model.onnxPath))
  const spec = fusedSpec(model, spanserveMlpWidth(file))
  const weights = spanserveOnnxWeights(
    file,
    model.onnxPath,
    spec,
    (problem) => new ModelLoadError(`${problem} (--model-graph fused reads spanserve's builder names; use --model-graph file for other models)`),
  )
  return { spec, weights, source: 'onnx' }
}

/** As fusedInputs, or why not (auto): a checkpoint the graph does not cover, or an ONNX file spanserve did not write. */
function tryFusedInputs(model: ModelInfo): Found {
  const checkpoint = CHECKPOINT_MODEL_TYPES.includes(model.modelType) && hasSafetensors(model.dir)
  if (!checkpoint && !(model.modelType === 'llama' && model.onnxPath !== '' && producerName(model.onnxPath) === 'spanserve')) {
    return { reason: `no ${CHECKPOINT_MODEL_TYPES.join(', ')} safetensors checkpoint, and the ONNX file is not one spanserve wrote` }
  }
  try {
    return fusedInputs(model)
  } catch (err) {
    if (err instanceof ModelLoadError) return { reason: err.message }
    throw err
  }
}

/**
 * The ModelProto's producer_name, read from the file's first bytes (the builder writes it before the
 * graph): whether to try the fused graph without parsing a large file that cannot have it.
 */
function producerName(path: string): string | null {
  const head = Buffer.alloc(256)
  const fd = openSync(path, 'r')
  let n: number
  try {
    n = readSync(fd, head, 0, head.length, 0)
  } finally {
    closeSync(fd)
  }
  let at = 0
  const varint = (): number => {
    let v = 0
    for (let shift = 0; at < n && shift < 35; shift += 7) {
      const b = head[at++]!
      v += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return v
    }
    return -1
  }
  while (at < n) {
    const key = varint()
    if (key < 0) return null
    const field = Math.floor(key / 8)
    const wire = key & 7
    if (wire === 0) {
      if (varint() < 0) return null
    } else if (wire === 2) {
      const len = varint()
      if (len < 0 || at + len > n) return null
      if (field === 2) return head.toString('utf8', at, at + len)
      at += len
    } else return null
  }
  return null
}
