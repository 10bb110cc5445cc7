/**
 * A GGUF v3 reader for what the writer makes: the header, every metadata value, the tensor infos
 * and, on request, one tensor's values (F32, or Q8_0 / Q4_0 dequantized as ggml does). It checks what llama.cpp's loader checks (magic, version,
 * offsets aligned and in order, data inside the file), so a file it accepts is laid out as llama.cpp expects.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, TensorType, tensorBytes, ValueType, type ScalarType, type TensorTypeName } from './format.ts'
import { dequantize } from './quantize.ts'

export type ReadValue = string | number | bigint | boolean | ReadValue[]

export interface ReadTensorInfo {
  name: string
  dims: number[]
  type: TensorTypeName
  /** From the start of the data section. */
  offset: number
}

export interface ReadGguf {
  version: number
  metadata: Map<string, { type: string; value: ReadValue }>
  tensors: ReadTensorInfo[]
  alignment: number
  /** Absolute file offset of the data section. */
  dataStart: number
  fileSize: number
}

const TYPE_NAMES = Object.fromEntries(Object.entries(ValueType).map(([k, v]) => [v, k])) as Record<number, keyof typeof ValueType>
const TENSOR_TYPES = Object.fromEntries(Object.entries(TensorType).map(([k, v]) => [v, k])) as Record<number, TensorTypeName>

/** Reads forward through a buffer holding the file's head (the tensor data is not read). */
class Cursor {
  at = 0
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new Error(`GGUF header runs past ${this.buf.length} bytes`)
  }

  scalar(type: ScalarType): number | bigint | boolean | string {
    if (type === 'string') {
      const n = Number(this.scalar('u64'))
      this.need(n)
      const s = this.buf.toString('utf8', this.at, this.at + n)
      this.at += n
      return s
    }
    const size = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 }[type]
    this.need(size)
    const b = this.buf
    const at = this.at
    this.at += size
    if (type === 'u8') return b.readUInt8(at)
    if (type === 'i8') return b.readInt8(at)
    if (type === 'bool') return b.readUInt8(at) !== 0
    if (type === 'u16') return b.readUInt16LE(at)
    if (type === 'i16') return b.readInt16LE(at)
    if (type === 'u32') return b.readUInt32LE(at)
    if (type === 'i32') return b.readInt32LE(at)
    if (type === 'f32') return b.readFloatLE(at)
    if (type === 'f64') return b.readDoubleLE(at)
    if (type === 'u64') return b.readBigUInt64LE(at)
    return b.readBigInt64LE(at)
  }

  typeName(): keyof typeof ValueType {
    const id = this.scalar('u32') as number
    const name = TYPE_NAMES[id]
    if (!name) throw new Error(`unknown GGUF value type ${id}`)
    return name
  }

  value(type: keyof typeof ValueType): ReadValue {
    if (type !== 'array') return this.scalar(type)
    const of = this.typeName()
    const n = Number(this.scalar('u64'))
    const out: ReadValue[] = []
    for (let i = 0; i < n; i++) out.push(this.value(of))
    return out
  }
}

function parse(buf: Buffer, fileSize: number): ReadGguf {
  const c = new Cursor(buf)
  const magic = c.scalar('u32')
  if (magic !== GGUF_MAGIC) throw new Error(`not a GGUF file (magic 0x${(magic as number).toString(16)})`)
  const version = c.scalar('u32') as number
  if (version !== 3) throw new Error(`GGUF version ${version}, expected 3`)
  const nTensors = Number(c.scalar('u64'))
  const nKv = Number(c.scalar('u64'))
  const metadata = new Map<string, { type: string; value: ReadValue }>()
  for (let i = 0; i < nKv; i++) {
    const key = c.scalar('string') as string
    if (metadata.has(key)) throw new Error(`duplicate metadata key ${key}`)
    const type = c.typeName()
    metadata.set(key, { type, value: c.value(type) })
  }
  const alignment = (metadata.get('general.alignment')?.value as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT
  const tensors: ReadTensorInfo[] = []
  for (let i = 0; i < nTensors; i++) {
    const name = c.scalar('string') as string
    const nDims = c.scalar('u32') as number
    const dims = Array.from({ length: nDims }, () => Number(c.scalar('u64')))
    const id = c.scalar('u32') as number
    const type = TENSOR_TYPES[id]
    if (!type || type === 'F16') throw new Error(`tensor ${name}: type ${id}, this reader knows F32, Q8_0 and Q4_0`)
    const offset = Number(c.scalar('u64'))
    tensors.push({ name, dims, type, offset })
  }
  const dataStart = alignUp(c.at, alignment)
  let end = 0
  for (const t of tensors) {
    if (t.offset % alignment !== 0) throw new Error(`tensor ${t.name}: offset ${t.offset} is not a multiple of ${alignment}`)
    if (t.offset < end) throw new Error(`tensor ${t.name}: offset ${t.offset} overlaps the tensor before (ends at ${end})`)
    end =
      t.offset +
      tensorBytes(
        t.type,
        t.dims.reduce((a, b) => a * b, 1),
      )
    if (dataStart + end > fileSize) throw new Error(`tensor ${t.name}: data ends at ${dataStart + end}, past the file's ${fileSize} bytes`)
  }
  return { version, metadata, tensors, alignment, dataStart, fileSize }
}

export function readGguf(path: string): ReadGguf {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    // The header of a model with a 1,024-token vocabulary is tens of KB: read 1 MB, more if it runs past.
    for (let n = 1 << 20; ; n *= 4) {
      const buf = Buffer.alloc(Math.min(n, size))
      readSync(fd, buf, 0, buf.length, 0)
      try {
        return parse(buf, size)
      } catch (err) {
        if (buf.length === size || !(err as Error).message.includes('runs past')) throw err
      }
    }
  } finally {
    closeSync(fd)
  }
}

/** One tensor's bytes as stored: F32 values, or quantized blocks. */
export function readTensorBytes(path: string, gguf: ReadGguf, name: string): Uint8Array {
  const t = gguf.tensors.find((x) => x.name === name)
  if (!t) throw new Error(`no tensor ${name}`)
  const out = new Uint8Array(
    tensorBytes(
      t.type,
      t.dims.reduce((a, b) => a * b, 1),
    ),
  )
  const fd = openSync(path, 'r')
  try {
    readSync(fd, out, 0, out.length, gguf.dataStart + t.offset)
  } finally {
    closeSync(fd)
  }
  return out
}

/** One tensor's values: F32 as stored, a quantized tensor dequantized. */
export function readTensor(path: string, gguf: ReadGguf, name: string): Float32Array {
  const bytes = readTensorBytes(path, gguf, name)
  const t = gguf.tensors.find((x) => x.name === name)!
  if (t.type === 'F32') return new Float32Array(bytes.buffer)
  if (t.type === 'F16') throw new Error(`tensor ${name}: F16 is not read here`)
  return dequantize(
    t.type,
    bytes,
    t.dims.reduce((a, b) => a * b, 1),
  )
}
