// Weight-only quantization of an ONNX graph's MatMuls into ONNX Runtime's com.microsoft MatMulNBits:
// each [K, N] float weight becomes per-block (32 along K) integer codes and one fp32 scale per block,
// symmetric around MatMulNBits's default zero point, so no zero_points input is written.

import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type ModelProto = InstanceType<typeof onnx.ModelProto>
type TensorProto = InstanceType<typeof onnx.TensorProto>
type NodeProto = InstanceType<typeof onnx.NodeProto>

export type QuantizationBits = 4 | 8
export type Quantization = 'int8' | 'int4'

const MS_DOMAIN = 'com.microsoft'

/**
 * MatMulNBits's accuracy_level 4: the CPU kernel quantizes the activations to int8 per block and
 * multiplies in integers, several times faster than dequantizing to fp32 (level 0). Measured on the
 * embedded model's corpus perplexity, levels 0 and 4 agree to 0.1%.
 */
const ACCURACY_LEVEL = 4

export interface BlockwiseWeights {
  /** [N, nBlocks, blockSize * bits / 8] codes, one row per output column; int4 packs low nibble first. */
  data: Uint8Array
  /** [N * nBlocks] fp32 scales: w ≈ (q - 2^(bits-1)) * scale. */
  scales: Float32Array
}

/**
 * Quantizes a row-major [K, N] weight (a MatMul's B) into MatMulNBits's layout. int8 is llama.cpp's
 * Q8_0 (scale = max|w| / 127); int4 is Q4_0 (scale = w_maxabs / -8, the signed value of largest
 * magnitude mapping to code 0), which uses all 16 codes where max|w| / 7 would use 15. K not a
 * multiple of blockSize is padded with zeros (code = zero point).
 */
export function quantizeBlockwise(weights: Float32Array, K: number, N: number, bits: QuantizationBits, blockSize = 32): BlockwiseWeights {
  if (weights.length !== K * N) throw new Error(`quantizeBlockwise: ${weights.length} weights for [${K}, ${N}]`)
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new Error(`quantizeBlockwise: block size ${blockSize} must be a power of two ≥ 16`)
  const nBlocks = Math.ceil(K / blockSize)
  const blobSize = (blockSize * bits) / 8
  const zp = 1 << (bits - 1)
  const qMax = (1 << bits) - 1
  const data = new Uint8Array(N * nBlocks * blobSize)
  const scales = new Float32Array(N * nBlocks)
  const block = new Float32Array(blockSize)
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * blockSize
      const len = Math.min(blockSize, K - k0)
      let signedMax = 0
      for (let i = 0; i < blockSize; i++) {
        const w = i < len ? weights[(k0 + i) * N + n]! : 0
        block[i] = w
        if (Math.abs(w) > Math.abs(signedMax)) signedMax = w
      }
      // fround: codes are rounded against the scale as stored, so dequantization is exact to it.
      const scale = Math.fround(bits === 8 ? Math.abs(signedMax) / (zp - 1) : signedMax / -zp)
      const inv = scale === 0 ? 0 : 1 / scale
      scales[n * nBlocks + b] = scale
      const out = (n * nBlocks + b) * blobSize
      for (let i = 0; i < blockSize; i++) {
        const q = Math.min(qMax, Math.max(0, Math.round(block[i]! * inv) + zp))
        if (bits === 8) data[out + i] = q
        else data[out + (i >> 1)]! |= (i & 1) === 0 ? q : q << 4
      }
    }
  }
  return { data, scales }
}

/** The fp32 values of a float initializer, whether stored as raw_data (little-endian) or float_data. */
function floatsOf(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) {
    // Copy: a decoded proto's bytes are a view of the file buffer at any alignment.
    const out = new Float32Array(t.rawData.length / 4)
    new Uint8Array(out.buffer).set(t.rawData)
    return out
  }
  return Float32Array.from(t.floatData ?? [])
}

function intAttr(name: string, i: number) {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i })
}

/**
 * Rewrites, in place, every MatMul whose B is a 2-D float initializer into MatMulNBits, drops the
 * fp32 initializers no other node reads, and imports the com.microsoft opset; returns how many
 * MatMuls were replaced. MatMuls of two activations (attention scores) are left alone, and so are
 * initializers that are also graph inputs (a caller may override those).
 */
export function quantizeMatMuls(model: ModelProto, bits: QuantizationBits, blockSize = 32): number {
  const graph = model.graph
  if (!graph) return 0
  const inits = new Map<string, TensorProto>()
  for (const t of graph.initializer ?? []) inits.set(t.name ?? '', t as TensorProto)
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? ''))
  // A weight read by two MatMuls is quantized once; one read by anything else keeps its fp32 copy.
  const quantized = new Map<string, { data: string; scales: string; K: number; N: number }>()
  const added: TensorProto[] = []
  let replaced = 0
  const nodes = (graph.node ?? []) as NodeProto[]
  for (let idx = 0; idx < nodes.length; idx++) {
    const node = nodes[idx]!
    if (node.opType !== 'MatMul' || (node.domain ?? '') !== '' || (node.input ?? []).length !== 2) continue
    const wName = node.input![1]!
    const w = inits.get(wName)
    if (!w || graphInputs.has(wName) || w.dataType !== onnx.TensorProto.DataType.FLOAT || (w.dims ?? []).length !== 2) continue
    let q = quantized.get(wName)
    if (!q) {
      const [K, N] = w.dims!.map(Number) as [number, number]
      const { data, scales } = quantizeBlockwise(floatsOf(w), K, N, bits, blockSize)
      q = { data: `${wName}_Q${bits}`, scales: `${wName}_scales`, K, N }
      const nBlocks = Math.ceil(K / blockSize)
      added.push(onnx.TensorProto.create({ name: q.data, dims: [N, nBlocks, (blockSize * bits) / 8], dataType: onnx.TensorProto.DataType.UINT8, rawData: data }))
      added.push(
        onnx.TensorProto.create({
          name: q.scales,
          dims: [N * nBlocks],
          dataType: onnx.TensorProto.DataType.FLOAT,
          rawData: new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength),
        }),
      )
      quantized.set(wName, q)
    }
    nodes[idx] = onnx.NodeProto.create({
      opType: 'MatMulNBits',
      domain: MS_DOMAIN,
      name: node.name ?? '',
      input: [node.input![0]!, q.data, q.scales],
      output: node.output ?? [],
      attribute: [intAttr('K', q.K), intAttr('N', q.N), intAttr('bits', bits), intAttr('block_size', blockSize), intAttr('accuracy_level', ACCURACY_LEVEL)],
    })
    replaced++
  }
  if (replaced === 0) return 0
  graph.node = nodes
  const stillRead = new Set<string>()
  for (const n of nodes) for (const name of n.input ?? []) stillRead.add(name)
  const dropped = new Set([...quantized.keys()].filter((name) => !stillRead.has(name)))
  graph.initializer = [...(graph.initializer ?? []).filter((t) => !dropped.has(t.name ?? '')), ...added]
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !dropped.has(v.name ?? ''))
  const opsets = model.opsetImport ?? []
  if (!opsets.some((o) => o.domain === MS_DOMAIN)) model.opsetImport = [...opsets, onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: 1 })]
  return replaced
}

export function quantizationBits(q: Quantization): QuantizationBits {
  return q === 'int8' ? 8 : 4
}

/** An encoded ONNX model with its MatMuls quantized (see quantizeMatMuls). */
export function quantizeOnnx(bytes: Uint8Array, quantization: Quantization): Uint8Array {
  const model = onnx.ModelProto.decode(bytes)
  quantizeMatMuls(model, quantizationBits(quantization))
  return onnx.ModelProto.encode(model).finish()
}

/** The file build-model writes beside model.onnx, named as published ONNX directories name theirs. */
export function quantizedFileName(q: Quantization): string {
  return q === 'int8' ? 'model_q8.onnx' : 'model_q4.onnx'
}
