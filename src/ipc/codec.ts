/**
 * Wire encoding of every Message: frame 0 is the message as JSON with each typed array replaced by
 * {"$b": frameIndex, "t": kind}; the arrays travel as raw binary frames after it, so token ids and
 * similar per-step payloads are never turned into JSON numbers. Decoding checks each message against
 * its kind's schema (message-schemas.ts), so a handler only ever sees a well-formed message.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import type { Message } from './messages.ts'
import { BINARY_KINDS, MESSAGE_SCHEMAS, toJsonSchema, type BinaryKind } from './message-schemas.ts'

function kindOf(v: ArrayBufferView): BinaryKind | null {
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

class DecodeError extends Error {
  override name = 'DecodeError'
}

const ajv = new Ajv({ strict: true, allErrors: false })
ajv.addKeyword({
  keyword: 'typedArray',
  schemaType: 'string',
  validate: function typedArray(kind: BinaryKind, data: unknown): boolean {
    if (data instanceof BINARY_KINDS[kind]) return true
    ;(typedArray as { errors?: Partial<ErrorObject>[] }).errors = [{ keyword: 'typedArray', message: `must be a ${BINARY_KINDS[kind].name} frame`, params: { kind } }]
    return false
  },
})
const validators = new Map<string, ValidateFunction>(
  Object.entries(MESSAGE_SCHEMAS).map(([type, schema]) => [type, ajv.compile(toJsonSchema(schema))]),
)

export function decode(frames: readonly Buffer[]): Message {
  if (frames.length === 0) throw new DecodeError('codec: empty message')
  const msg: unknown = JSON.parse(frames[0]!.toString('utf8'), (_key, value: unknown) => {
    if (value !== null && typeof value === 'object' && '$b' in value && 't' in value) {
      const ref = value as { $b: number; t: BinaryKind }
      const frame = frames[ref.$b]
      const Ctor = Object.hasOwn(BINARY_KINDS, ref.t) ? BINARY_KINDS[ref.t] : undefined
      if (!frame || !Ctor) throw new DecodeError(`codec: bad binary reference ${JSON.stringify(ref)}`)
      // Copy into an aligned buffer: ZeroMQ frames may start at any byte offset.
      const bytes = new Uint8Array(frame.byteLength)
      bytes.set(frame)
      return new Ctor(bytes.buffer, 0, frame.byteLength / Ctor.BYTES_PER_ELEMENT)
    }
    return value
  })
  if (typeof msg !== 'object' || msg === null || typeof (msg as { type?: unknown }).type !== 'string') {
    throw new DecodeError('codec: message without a type')
  }
  const type = (msg as { type: string }).type
  const validate = validators.get(type)
  if (validate === undefined) throw new DecodeError(`codec: unknown message type ${JSON.stringify(type)}`)
  if (!validate(msg)) throw new DecodeError(`codec: malformed ${type} message: ${ajv.errorsText(validate.errors, { dataVar: type })}`)
  return msg as Message
}
