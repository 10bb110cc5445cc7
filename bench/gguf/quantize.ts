/**
 * ggml's Q8_0 and Q4_0 blocks, made as llama.cpp's reference quantizers make them
 * (ggml/src/ggml-quants.c, quantize_row_q8_0_ref and quantize_row_q4_0_ref, which llama-quantize and
 * convert_hf_to_gguf.py's --outtype q8_0 use): rows of a multiple of 32 values, 32 values per block,
 * each block an f16 scale d then its quants. The arithmetic is fp32, as in C, so the bytes are llama.cpp's.
 */
import { QK } from './format.ts'

const f32 = new Float32Array(1)
const f32Bits = new Uint32Array(f32.buffer)

/** IEEE half from a float, rounded to nearest even (F16C's _cvtss_sh and ggml's generic conversion). */
export function toHalf(x: number): number {
  f32[0] = x
  const b = f32Bits[0]!
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  const mant = b & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // A half subnormal: m × 2^-24, m = the 24-bit significand shifted down.
    if (e < -10) return sign
    const m = mant | 0x800000
    const shift = 14 - e
    let h = m >>> shift
    const rem = m & ((1 << shift) - 1)
    const half = 1 << (shift - 1)
    if (rem > half || (rem === half && h & 1)) h++
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // A carry out of the significand moves into the exponent, as it should (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++
  return sign | h
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

/** C's roundf: halves away from zero. */
const roundf = (x: number): number => Math.sign(x) * Math.round(Math.abs(x))

/** Q8_0: d = max|x| / 127, q = roundf(x / d) as int8 (x times the fp32 inverse of d, as in C). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % QK !== 0) throw new Error(`Q8_0 quantizes blocks of ${QK} values; ${x.length} is not a multiple`)
  const out = new Uint8Array((x.length / QK) * (2 + QK))
  const view = new DataView(out.buffer)
  for (let b = 0, o = 0; b < x.length; b += QK, o += 2 + QK) {
    let amax = 0
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b + j]!))
    const d = Math.fround(amax / 127)
    const id = d ? Math.fround(1 / d) : 0
    view.setUint16(o, toHalf(d), true)
    for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, roundf(Math.fround(x[b + j]! * id)))
  }
  return out
}

/**
 * Q4_0: d = max / -8, max the value of largest magnitude with its sign, q = min(15, trunc(x / d + 8.5))
 * (so the extreme value maps to 0, and the opposite end is clamped at 15); byte j holds q[j] in its low
 * nibble and q[j + 16] in its high one.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % QK !== 0) throw new Error(`Q4_0 quantizes blocks of ${QK} values; ${x.length} is not a multiple`)
  const out = new Uint8Array((x.length / QK) * (2 + QK / 2))
  const view = new DataView(out.buffer)
  const q = (v: number, id: number): number => Math.min(15, Math.trunc(Math.fround(Math.fround(v * id) + 8.5)))
  for (let b = 0, o = 0; b < x.length; b += QK, o += 2 + QK / 2) {
    let amax = 0
    let max = 0
    for (let j = 0; j < QK; j++) {
      const v = x[b + j]!
      if (amax < Math.abs(v)) {
        amax = Math.abs(v)
        max = v
      }
    }
    const d = Math.fround(max / -8)
    const id = d ? Math.fround(1 / d) : 0
    view.setUint16(o, toHalf(d), true)
    for (let j = 0; j < QK / 2; j++) out[o + 2 + j] = q(x[b + j]!, id) | (q(x[b + QK / 2 + j]!, id) << 4)
  }
  return out
}

/** ggml's dequantize_row_q8_0 / _q4_0: q × d with d read back from its f16. */
export function dequantize(type: 'Q8_0' | 'Q4_0', bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const size = type === 'Q8_0' ? 2 + QK : 2 + QK / 2
  for (let b = 0, o = 0; b < n; b += QK, o += size) {
    const d = fromHalf(view.getUint16(o, true))
    for (let j = 0; j < QK / 2; j++) {
      if (type === 'Q8_0') {
        out[b + j] = view.getInt8(o + 2 + j) * d
        out[b + QK / 2 + j] = view.getInt8(o + 2 + QK / 2 + j) * d
      } else {
        const byte = bytes[o + 2 + j]!
        out[b + j] = ((byte & 0x0f) - 8) * d
        out[b + QK / 2 + j] = ((byte >> 4) - 8) * d
      }
    }
  }
  return out
}
