/**
 * GGUF's on-disk vocabulary (version 3, little-endian), as llama.cpp's ggml/src/gguf.cpp and
 * gguf-py/gguf/constants.py define it: the magic, the metadata value types, the tensor types we write.
 */

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3
/** general.alignment's default: every tensor's data starts at a multiple of it. */
export const GGUF_DEFAULT_ALIGNMENT = 32

export const ValueType = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const
export type ScalarType = Exclude<keyof typeof ValueType, 'array'>

/** ggml_type ids of the types written here: F32, and the block quantizations users run on CPUs. */
export const TensorType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const
export type TensorTypeName = keyof typeof TensorType

/** Values per block of Q4_0 and Q8_0 (ggml's QK4_0, QK8_0): one f16 scale per block. */
export const QK = 32

/** Bytes of `n` values of a type: F32 4 each; Q8_0 a 2-byte scale and 32 int8 per block; Q4_0 the scale and 16 bytes of nibbles. */
export function tensorBytes(type: TensorTypeName, n: number): number {
  if (type === 'F32') return 4 * n
  if (type === 'F16') return 2 * n
  if (n % QK !== 0) throw new Error(`${type} holds blocks of ${QK} values; ${n} is not a multiple`)
  return (n / QK) * (type === 'Q8_0' ? 2 + QK : 2 + QK / 2)
}

/** llama_token_type, as tokenizer.ggml.token_type holds it. */
export const TokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const

/** A metadata value with its GGUF type: scalars, or an array of one scalar type. */
export type GgufValue =
  | { type: 'string'; value: string }
  | { type: 'bool'; value: boolean }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: Exclude<ScalarType, 'string' | 'bool' | 'u64' | 'i64'>; value: number }
  | { type: 'array'; of: 'string'; value: readonly string[] }
  | { type: 'array'; of: Exclude<ScalarType, 'string' | 'bool' | 'u64' | 'i64'>; value: readonly number[] }

export type GgufMetadata = ReadonlyArray<readonly [string, GgufValue]>

export interface GgufTensor {
  name: string
  /** ggml's ne: the fastest-varying dimension first (a [rows, cols] row-major matrix is [cols, rows]). */
  dims: readonly number[]
  /** F32: the values; a quantized type: its blocks' bytes (bench/gguf/quantize.ts). */
  type: TensorTypeName
  data: Float32Array | Uint8Array
}

export const u32 = (value: number): GgufValue => ({ type: 'u32', value })
export const f32 = (value: number): GgufValue => ({ type: 'f32', value })
export const str = (value: string): GgufValue => ({ type: 'string', value })
export const bool = (value: boolean): GgufValue => ({ type: 'bool', value })

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment
}
