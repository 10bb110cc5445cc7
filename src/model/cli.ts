// node --import tsx src/model/cli.ts [--preset default|large] [--out DIR]: build a model, print its directory.
// … --quantization int8|int4 [--model DIR]: write DIR's quantized ONNX file beside its model.onnx.

import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildModel, ensureModel } from './build.ts'
import { readModelInfo } from './load.ts'
import { isPresetName } from './presets.ts'
import { type Quantization, quantizedFileName, quantizeMatMuls, quantizationBits } from './quantize.ts'
import onnxProto from 'onnx-proto'

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'default' },
    out: { type: 'string' },
    model: { type: 'string' },
    quantization: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  process.stdout.write(
    'usage: cli.ts [--preset default|large] [--out DIR]\n' +
      '       cli.ts --quantization int8|int4 [--model DIR | --preset default|large]\n' +
      '  --out DIR             write the model to DIR (must not exist); default: the cache\n' +
      '                        ($SPANSERVE_CACHE_DIR or ~/.cache/spanserve/models)\n' +
      "  --quantization Q      write DIR/model_q8.onnx (int8) or model_q4.onnx (int4) from DIR's ONNX file:\n" +
      '                        MatMul weights as MatMulNBits, per block of 32; serve it with --onnx-file\n' +
      '  --model DIR           the model directory to quantize; default: the embedded model of --preset\n',
  )
  process.exit(0)
}
const preset = values.preset!
if (!isPresetName(preset)) {
  process.stderr.write(`unknown preset "${preset}" (expected default or large)\n`)
  process.exit(2)
}
const quantization = values.quantization
if (quantization !== undefined && quantization !== 'int8' && quantization !== 'int4') {
  process.stderr.write(`unknown quantization "${quantization}" (expected int8 or int4)\n`)
  process.exit(2)
}
if (quantization === undefined && values.model !== undefined) {
  process.stderr.write('--model is for --quantization; --out names where a new model is built\n')
  process.exit(2)
}
const log = (line: string): void => void process.stderr.write(`${line}\n`)
const dir = values.model ?? (values.out ? await buildModel(preset, values.out, log) : await ensureModel({ preset, log }))
if (quantization) {
  const q: Quantization = quantization
  const source = readModelInfo(dir).onnxPath
  if (source === '') throw new Error(`--quantization writes a quantized ONNX file from the directory's ONNX file; ${dir} holds only a checkpoint (safetensors): serve it with --quantization instead`)
  const model = onnxProto.onnx.ModelProto.decode(readFileSync(source))
  const count = quantizeMatMuls(model, quantizationBits(q))
  const target = join(dir, quantizedFileName(q))
  // Written aside and renamed, so a server started meanwhile never reads half a file.
  const partial = `${target}.${process.pid}.partial`
  writeFileSync(partial, onnxProto.onnx.ModelProto.encode(model).finish())
  renameSync(partial, target)
  log(`${count} MatMuls of ${source} quantized to ${q} (MatMulNBits, blocks of 32)`)
  process.stdout.write(`${target}\n`)
} else {
  process.stdout.write(`${dir}\n`)
}
