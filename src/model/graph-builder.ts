// The ONNX graph builder every graph here is written with: nodes, initializers and value infos, with
// each helper returning its output's name. A module of its own so that the blocks (graph-blocks.ts)
// and the graphs built from them (onnx-graph.ts, tp/segment-graph.ts) import it without a circle.

import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type AttrValue = number | number[] | { float: number }

const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
export const OPSET = 17

/** Collects nodes and initializers; every helper returns its output's name. */
export class GraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = []
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = []
  private counter = 0

  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    const out = output ?? `/${type}_${this.counter}`
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (Array.isArray(v)) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
      if (typeof v === 'object') return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v.float }
      return { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
    })
    this.nodes.push(onnx.NodeProto.create({ opType: type, name: `${type}_${this.counter++}`, input: inputs, output: [out], attribute }))
    return out
  }

  floats(name: string, data: Float32Array, dims: number[]): string {
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: raw }))
    return name
  }

  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)))
    const raw = new Uint8Array(data.buffer)
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: INT64, rawData: raw }))
    return name
  }
}

export function valueInfo(name: string, elemType: number, dims: (string | number)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  })
}
