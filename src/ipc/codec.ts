/**
 * Wire encoding of every Message: frame 0 is the message as JSON with each typed array replaced by
 * {"$b": frameIndex, "t": kind}; the arrays travel as raw binary frames after it, so token ids and
 * similar per-step payloads are never turned into JSON numbers.
 */
import type { Message } from './messages.ts'

const KINDS = {
  i32: Int32Array,
  f32: Float32Array,
  u8: Uint8Array,
} as const
type Kind = keyof typeof KINDS

function kindOf(v: ArrayBufferView): Kind | null {
  if (v instanceof Int32Array) return 'i32'
  if (v instanceof Float32Array) return 'f32'
  if (v instanceof Uint8Array) return 'u8'
  return null
}

export function encode(msg: Message): Buffer[] {
  const frames: Buffer[] = []
  const header = JSON.stringify(msg, (_key, value: unknown) => {
    if (ArrayBuffer.isView(value)) {
      const kind = kindOf(value)
      if (kind === null) throw new TypeError(`codec: unsupported typed array ${value.constructor.name}`)
      frames.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength))
      return { $b: frames.length, t: kind }
    }
    return value
  })
  return [Buffer.from(header), ...frames]
}

export class DecodeError extends Error {
  override name = 'DecodeError'
}

export function decode(frames: readonly Buffer[]): Message {
  if (frames.length === 0) throw new DecodeError('codec: empty message')
  const msg = JSON.parse(frames[0]!.toString('utf8'), (_key, value: unknown) => {
    if (value !== null && typeof value === 'object' && '$b' in value && 't' in value) {
      const ref = value as { $b: number; t: Kind }
      const frame = frames[ref.$b]
      const Ctor = KINDS[ref.t]
      if (!frame || !Ctor) throw new DecodeError(`codec: bad binary reference ${JSON.stringify(ref)}`)
      // Copy into an aligned buffer: ZeroMQ frames may start at any byte offset.
      const bytes = new Uint8Array(frame.byteLength)
      bytes.set(frame)
      return new Ctor(bytes.buffer, 0, frame.byteLength / Ctor.BYTES_PER_ELEMENT)
    }
    return value
  }) as Message
  if (typeof msg !== 'object' || msg === null || typeof (msg as { type?: unknown }).type !== 'string') {
    throw new DecodeError('codec: message without a type')
  }
  return msg
}
