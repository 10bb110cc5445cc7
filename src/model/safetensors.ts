// Reads Hugging Face safetensors checkpoints: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}} (offsets relative to the data after the header), then the raw
// little-endian data. One file (model.safetensors) or shards listed by model.safetensors.index.json.
// Tensors are read one at a time from their file, so a checkpoint larger than a Buffer can hold
// still loads; each comes back as float32 (on a little-endian host, as the fused builder requires).

import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { ModelLoadError } from './errors.ts'

const SINGLE = 'model.safetensors'
const INDEX = 'model.safetensors.index.json'
const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 }

interface Entry {
  file: string
  dtype: string
  shape: number[]
  /** Absolute byte offset in the file, and length. */
  at: number
  bytes: number
}

export interface Checkpoint {
  has(name: string): boolean
  shape(name: string): number[]
  /** The tensor as float32, row-major; ModelLoadError if absent or of another dtype. */
  read(name: string): Float32Array
}

/** Whether a model directory holds a safetensors checkpoint, in one file or sharded. */
export function hasSafetensors(dir: string): boolean {
  return existsSync(join(dir, SINGLE)) || existsSync(join(dir, INDEX))
}

function readAt(fd: number, file: string, at: number, bytes: number): Buffer {
  const buf = Buffer.alloc(bytes)
  let got = 0
  while (got < bytes) {
    const n = readSync(fd, buf, got, bytes - got, at + got)
    if (n === 0) throw new ModelLoadError(`${file} ends before byte ${at + bytes}`)
    got += n
  }
  return buf
}

function readHeader(file: string, into: Map<string, Entry>): void {
  const fd = openSync(file, 'r')
  try {
    const len = Number(readAt(fd, file, 0, 8).readBigUInt64LE(0))
    if (len > 100_000_000) throw new ModelLoadError(`${file}: header length ${len} is not plausible (not a safetensors file?)`)
    let header: Record<string, { dtype?: unknown; shape?: unknown; data_offsets?: unknown }>
    try {
      header = JSON.parse(readAt(fd, file, 8, len).toString('utf8'))
    } catch (err) {
      throw new ModelLoadError(`${file}: the header is not valid JSON: ${(err as Error).message}`)
    }
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__') continue
      const [start, end] = (t.data_offsets ?? []) as number[]
      if (typeof t.dtype !== 'string' || !Array.isArray(t.shape) || typeof start !== 'number' || typeof end !== 'number') {
        throw new ModelLoadError(`${file}: tensor "${name}" lacks dtype, shape or data_offsets`)
      }
      into.set(name, { file, dtype: t.dtype, shape: t.shape as number[], at: 8 + len + start, bytes: end - start })
    }
  } finally {
    closeSync(fd)
  }
}

/** The tensors of a directory's checkpoint (headers only are read here). */
export function openCheckpoint(dir: string): Checkpoint {
  const entries = new Map<string, Entry>()
  const indexPath = join(dir, INDEX)
  if (existsSync(join(dir, SINGLE))) readHeader(join(dir, SINGLE), entries)
  else if (existsSync(indexPath)) {
    let weightMap: Record<string, string>
    try {
      weightMap = (JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> }).weight_map
    } catch (err) {
      throw new ModelLoadError(`${indexPath} is not a safetensors index: ${(err as Error).message}`)
    }
    for (const shard of new Set(Object.values(weightMap ?? {}))) readHeader(join(dir, shard), entries)
  } else throw new ModelLoadError(`${dir} holds neither ${SINGLE} nor ${INDEX}`)

  const entry = (name: string): Entry => {
    const e = entries.get(name)
    if (!e) throw new ModelLoadError(`${dir}: the checkpoint has no tensor "${name}"`)
    return e
  }
  return {
    has: (name) => entries.has(name),
    shape: (name) => entry(name).shape,
    read(name) {
      const e = entry(name)
      const width = BYTES[e.dtype]
      const count = e.shape.reduce((a, b) => a * b, 1)
      if (width === undefined) throw new ModelLoadError(`${e.file}: tensor "${name}" is ${e.dtype}; only F32, F16 and BF16 are read`)
      if (count * width !== e.bytes) throw new ModelLoadError(`${e.file}: tensor "${name}" has ${e.bytes} bytes for shape [${e.shape.join(', ')}] of ${e.dtype}`)
      const fd = openSync(e.file, 'r')
      let raw: Buffer
      try {
        raw = readAt(fd, e.file, e.at, e.bytes)
      } finally {
        closeSync(fd)
      }
      return toFloat32(raw, e.dtype, count)
    },
  }
}

/** Half-precision bits to float: IEEE binary16 (subnormals, inf and NaN included). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : Number.NaN
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

function toFloat32(raw: Buffer, dtype: string, count: number): Float32Array {
  if (dtype === 'F32') {
    const out = new Float32Array(count)
    new Uint8Array(out.buffer).set(raw)
    return out
  }
  const halves = new Uint16Array(count)
  new Uint8Array(halves.buffer).set(raw)
  if (dtype === 'BF16') {
    // bfloat16 is the top half of a float32's bits.
    const bits = new Uint32Array(count)
    for (let i = 0; i < count; i++) bits[i] = halves[i]! << 16
    return new Float32Array(bits.buffer)
  }
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) out[i] = halfToFloat(halves[i]!)
  return out
}
