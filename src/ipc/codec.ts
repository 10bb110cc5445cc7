/**
 * Wire encoding of every Message, one ZeroMQ frame each: the message as JSON, or, when it holds typed
 * arrays, a binary layout: a 0 byte (no JSON text starts with one), the JSON header's byte length
 * (uint32 LE), the header, with each typed array replaced by {"$b": byteOffset, "n": length, "t":
 * kind}, then, from the next 4-byte boundary, the arrays' bytes, each 4-byte aligned. Token ids,
 * logprobs and similar per-step payloads are never turned into JSON numbers, and a message is one
 * frame: each further ZeroMQ frame cost about 9 us of CPU to send and receive here, and a step sends
 * three messages with arrays. Decoding checks each message against its kind's schema
 * (message-schemas.ts), so a handler only ever sees a well-formed message.
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

/** Whether a JSON schema holds a typed array anywhere. */
function holdsTypedArray(schema: unknown): boolean {
  if (schema === null || typeof schema !== 'object') return false
  if ('typedArray' in schema) return true
  return Object.values(schema).some(holdsTypedArray)
}

/** Each kind's JSON schema, for its validator and for JSON_ONLY. */
const JSON_SCHEMAS = Object.entries(MESSAGE_SCHEMAS).map(([type, schema]) => [type, toJsonSchema(schema)] as const)

/** Kinds whose schema has no typed array: JSON.stringify alone, without the walk for frames. */
const JSON_ONLY = new Set(JSON_SCHEMAS.filter(([, schema]) => !holdsTypedArray(schema)).map(([type]) => type))

/** The typed arrays of a message being encoded, and the bytes their frame needs so far. */
interface Packing {
  arrays: ArrayBufferView[]
  offsets: number[]
  bytes: number
}

/**
 * `node` with every typed array inside replaced by its reference (the array added to `packing`): the
 * node itself where it holds none, else a copy of the path down to each array, so that the caller's
 * message is left as it was. A walk, not a JSON.stringify replacer, which is called for every value
 * and cost more than the stringify itself.
 */
function withRefs(node: unknown, packing: Packing): unknown {
  if (node === null || typeof node !== 'object') return node
  if (ArrayBuffer.isView(node)) {
    const kind = kindOf(node)
    if (kind === null) throw new TypeError(`codec: unsupported typed array ${node.constructor.name}`)
    const offset = align4(packing.bytes)
    packing.arrays.push(node)
    packing.offsets.push(offset)
    packing.bytes = offset + node.byteLength
    return { $b: offset, n: node.byteLength / BINARY_KINDS[kind].BYTES_PER_ELEMENT, t: kind }
  }
  if (Array.isArray(node)) {
    let copy: unknown[] | null = null
    for (let i = 0; i < node.length; i++) {
      const v: unknown = node[i]
      const r = withRefs(v, packing)
      if (r !== v) (copy ??= node.slice())[i] = r
    }
    return copy ?? node
  }
  let copy: Record<string, unknown> | null = null
  const obj = node as Record<string, unknown>
  for (const key in obj) {
    const v = obj[key]
    const r = withRefs(v, packing)
    // Defined, not assigned: a key "__proto__" stays an own property (as in restoreArrays).
    if (r !== v) Object.defineProperty((copy ??= { ...obj }), key, { value: r, writable: true, enumerable: true, configurable: true })
  }
  return copy ?? node
}

/** The first byte of a message with typed arrays, and where its header starts (after the length). */
const BINARY_MARK = 0
const HEADER_AT = 5

const align4 = (n: number) => (n + 3) & ~3

export function encode(msg: Message): Buffer[] {
  if (JSON_ONLY.has(msg.type)) return [Buffer.from(JSON.stringify(msg))]
  const packing: Packing = { arrays: [], offsets: [], bytes: 0 }
  const header = JSON.stringify(withRefs(msg, packing))
  if (packing.arrays.length === 0) return [Buffer.from(header)]
  const headerBytes = Buffer.byteLength(header)
  const binaryAt = align4(HEADER_AT + headerBytes)
  const frame = Buffer.alloc(binaryAt + packing.bytes)
  frame[0] = BINARY_MARK
  frame.writeUInt32LE(headerBytes, 1)
  frame.write(header, HEADER_AT)
  packing.arrays.forEach((a, i) => frame.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), binaryAt + packing.offsets[i]!))
  return [frame]
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
// Compiled on a type's first decode: a process receives a few of the types, and compiling them all
// cost every process start about 0.3 s of CPU.
const schemas = new Map(JSON_SCHEMAS)
const validators = new Map<string, ValidateFunction>()
function validatorOf(type: string): ValidateFunction | undefined {
  let validate = validators.get(type)
  if (validate === undefined) {
    const schema = schemas.get(type)
    if (schema === undefined) return undefined
    validate = ajv.compile(schema)
    validators.set(type, validate)
  }
  return validate
}

/** The typed array a {"$b": byteOffset, "n": length, "t": kind} reference names: a view of `binary`. */
function arrayOf(ref: { $b: unknown; n?: unknown; t: unknown }, binary: ArrayBuffer): ArrayBufferView {
  const Ctor = typeof ref.t === 'string' && Object.hasOwn(BINARY_KINDS, ref.t) ? BINARY_KINDS[ref.t as BinaryKind] : undefined
  const { $b: offset, n } = ref
  if (
    !Ctor ||
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(n) ||
    (offset as number) < 0 ||
    (n as number) < 0 ||
    (offset as number) % Ctor.BYTES_PER_ELEMENT !== 0 ||
    (offset as number) + (n as number) * Ctor.BYTES_PER_ELEMENT > binary.byteLength
  ) {
    throw new DecodeError(`codec: bad binary reference ${JSON.stringify(ref)}`)
  }
  return new Ctor(binary, offset as number, n as number)
}

const isRef = (v: object): v is { $b: unknown; n?: unknown; t: unknown } => '$b' in v && 't' in v

/** Replaces, in place, every binary reference inside `node` by its typed array. */
function restoreArrays(node: unknown, binary: ArrayBuffer): void {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const v: unknown = node[i]
      if (v !== null && typeof v === 'object') {
        if (isRef(v)) node[i] = arrayOf(v, binary)
        else restoreArrays(v, binary)
      }
    }
  } else if (node !== null && typeof node === 'object') {
    const obj = node as Record<string, unknown>
    for (const key in obj) {
      const v = obj[key]
      if (v !== null && typeof v === 'object') {
        // Defined, not assigned: a key "__proto__" (JSON.parse makes it an own property) stays one.
        if (isRef(v)) Object.defineProperty(obj, key, { value: arrayOf(v, binary), writable: true, enumerable: true, configurable: true })
        else restoreArrays(v, binary)
      }
    }
  }
}

export function decode(frames: readonly Buffer[]): Message {
  if (frames.length !== 1) throw new DecodeError(`codec: ${frames.length} frames (a message is one)`)
  const frame = frames[0]!
  let msg: unknown
  if (frame.length > 0 && frame[0] === BINARY_MARK) {
    // The length is checked before it is aligned: align4 works in 32-bit integers.
    const headerBytes = frame.length >= HEADER_AT ? frame.readUInt32LE(1) : Infinity
    if (headerBytes > frame.length - HEADER_AT || align4(HEADER_AT + headerBytes) > frame.length) throw new DecodeError('codec: truncated binary message')
    const binaryAt = align4(HEADER_AT + headerBytes)
    msg = JSON.parse(frame.toString('utf8', HEADER_AT, HEADER_AT + headerBytes))
    // A walk restores the arrays (JSON.parse's reviver, called for every value, cost several times
    // the parse itself). The binary part is copied once, into an aligned buffer (a ZeroMQ frame may
    // start at any byte offset); the arrays are views of it.
    restoreArrays(msg, new Uint8Array(frame.subarray(binaryAt)).buffer)
  } else {
    // JSON alone: a {"$b"} object left as it is fails the schema wherever a typed array is due.
    msg = JSON.parse(frame.toString('utf8'))
  }
  if (typeof msg !== 'object' || msg === null || typeof (msg as { type?: unknown }).type !== 'string') {
    throw new DecodeError('codec: message without a type')
  }
  const type = (msg as { type: string }).type
  const validate = validatorOf(type)
  if (validate === undefined) throw new DecodeError(`codec: unknown message type ${JSON.stringify(type)}`)
  if (!validate(msg)) throw new DecodeError(`codec: malformed ${type} message: ${ajv.errorsText(validate.errors, { dataVar: type })}`)
  return msg as Message
}
