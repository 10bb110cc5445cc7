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

/** ggml_type ids; only F32 is written here (the bench compares fp32 with fp32). */
export const TensorType = { F32: 0, F16: 1 } as const

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
  data: Float32Array
}

export const u32 = (value: number): GgufValue => ({ type: 'u32', value })
export const f32 = (value: number): GgufValue => ({ type: 'f32', value })
export const str = (value: string): GgufValue => ({ type: 'string', value })
export const bool = (value: boolean): GgufValue => ({ type: 'bool', value })

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment
}
