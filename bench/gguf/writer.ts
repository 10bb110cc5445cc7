/**
 * A GGUF v3 writer: header, metadata, tensor infos, then each tensor's data at an aligned offset.
 * Tensors (F32, or quantized blocks) are written one at a time (the large preset is ~300 MB in F32), into a temporary file
 * renamed into place, so a reader never sees a partial file.
 */
import { randomUUID } from 'node:crypto'
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { endianness } from 'node:os'
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, QK, TensorType, tensorBytes, ValueType, type GgufMetadata, type GgufTensor, type GgufValue, type ScalarType } from './format.ts'

/** Little-endian bytes appended to a growing buffer. */
class Bytes {
  private buf = Buffer.alloc(1 << 16)
  length = 0

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n))
    this.buf.copy(next, 0, 0, this.length)
    this.buf = next
  }

  scalar(type: ScalarType, v: number | bigint | boolean | string): void {
    if (type === 'string') {
      this.string(v as string)
      return
    }
    const size = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 }[type]
    this.room(size)
    const at = this.length
    const b = this.buf
    if (type === 'u8') b.writeUInt8(v as number, at)
    else if (type === 'i8') b.writeInt8(v as number, at)
    else if (type === 'bool') b.writeUInt8(v ? 1 : 0, at)
    else if (type === 'u16') b.writeUInt16LE(v as number, at)
    else if (type === 'i16') b.writeInt16LE(v as number, at)
    else if (type === 'u32') b.writeUInt32LE(v as number, at)
    else if (type === 'i32') b.writeInt32LE(v as number, at)
    else if (type === 'f32') b.writeFloatLE(v as number, at)
    else if (type === 'f64') b.writeDoubleLE(v as number, at)
    else if (type === 'u64') b.writeBigUInt64LE(BigInt(v as number | bigint), at)
    else b.writeBigInt64LE(BigInt(v as number | bigint), at)
    this.length += size
  }

  /** GGUF's string: a u64 byte length, then UTF-8 with no terminator. */
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8')
    this.scalar('u64', BigInt(bytes.length))
    this.room(bytes.length)
    bytes.copy(this.buf, this.length)
    this.length += bytes.length
  }

  value(v: GgufValue): void {
    this.scalar('u32', ValueType[v.type])
    if (v.type !== 'array') {
      this.scalar(v.type, v.value)
      return
    }
    this.scalar('u32', ValueType[v.of])
    this.scalar('u64', BigInt(v.value.length))
    for (const x of v.value) this.scalar(v.of, x)
  }

  pad(alignment: number): void {
    const n = alignUp(this.length, alignment) - this.length
    this.room(n)
    this.buf.fill(0, this.length, this.length + n)
    this.length += n
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length)
  }
}

function alignmentOf(metadata: GgufMetadata): number {
  const v = metadata.find(([k]) => k === 'general.alignment')?.[1]
  return v && v.type === 'u32' ? v.value : GGUF_DEFAULT_ALIGNMENT
}

/** The header, metadata and tensor infos, padded to the alignment: the data section starts right after. */
export function ggufHeader(metadata: GgufMetadata, tensors: readonly Omit<GgufTensor, 'data'>[]): Buffer {
  const keys = new Set<string>()
  for (const [k] of metadata) {
    if (keys.has(k)) throw new Error(`GGUF metadata key ${k} given twice`)
    keys.add(k)
  }
  const alignment = alignmentOf(metadata)
  const out = new Bytes()
  out.scalar('u32', GGUF_MAGIC)
  out.scalar('u32', GGUF_VERSION)
  out.scalar('u64', BigInt(tensors.length))
  out.scalar('u64', BigInt(metadata.length))
  for (const [k, v] of metadata) {
    out.string(k)
    out.value(v)
  }
  let offset = 0
  for (const t of tensors) {
    out.string(t.name)
    out.scalar('u32', t.dims.length)
    for (const d of t.dims) out.scalar('u64', BigInt(d))
    out.scalar('u32', TensorType[t.type])
    // Offsets count from the start of the data section; each tensor starts aligned.
    out.scalar('u64', BigInt(offset))
    offset = alignUp(
      offset +
        tensorBytes(
          t.type,
          t.dims.reduce((a, b) => a * b, 1),
        ),
      alignment,
    )
  }
  out.pad(alignment)
  return out.bytes()
}

/** Writes a GGUF file; each tensor's data length must match its dims and type (ggml quantizes along ne[0], the row). */
export function writeGguf(path: string, metadata: GgufMetadata, tensors: readonly GgufTensor[]): void {
  if (endianness() !== 'LE') throw new Error('GGUF is written little-endian; this host is big-endian')
  for (const t of tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1)
    if ((t.type === 'Q8_0' || t.type === 'Q4_0') && t.dims[0]! % QK !== 0) throw new Error(`tensor ${t.name}: ${t.type} rows of ${t.dims[0]} values are not whole blocks`)
    if (tensorBytes(t.type, n) !== t.data.byteLength || (t.type === 'F32') !== t.data instanceof Float32Array)
      throw new Error(`tensor ${t.name}: dims ${t.dims.join('×')} hold ${n} ${t.type} values (${tensorBytes(t.type, n)} bytes), data has ${t.data.byteLength} bytes`)
  }
  const alignment = alignmentOf(metadata)
  const tmp = `${path}.tmp-${process.pid}-${randomUUID()}`
  const fd = openSync(tmp, 'w')
  try {
    writeSync(fd, ggufHeader(metadata, tensors))
    const zeros = Buffer.alloc(alignment)
    for (const t of tensors) {
      const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
      writeSync(fd, bytes)
      const pad = alignUp(bytes.length, alignment) - bytes.length
      if (pad > 0) writeSync(fd, zeros, 0, pad)
    }
    closeSync(fd)
    renameSync(tmp, path)
  } catch (err) {
    try {
      closeSync(fd)
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true })
    throw err
  }
}
