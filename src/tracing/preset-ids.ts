/**
 * Span ids chosen before the span exists. A process whose tracing runs in another thread (the
 * worker's, offload.ts) cannot read back a span's context, yet must name it to another process: the
 * prefill side's prefill_transfer_kv_cache, which the decode side's decode_transferred links to. The
 * caller picks the id and passes it with the slice (SliceStartOptions.spanId); the SDK's id generator
 * hands it to the next span started, once.
 */
import { randomBytes } from 'node:crypto'
import { RandomIdGenerator, type IdGenerator } from '@opentelemetry/sdk-trace-base'

let preset: string | undefined

/** A fresh span id (16 hex digits) for SliceStartOptions.spanId. */
export function newSpanId(): string {
  return randomBytes(8).toString('hex')
}

/** The next span started takes this id (undefined: a random one, as always). */
export function presetSpanId(id: string | undefined): void {
  preset = id !== undefined && /^[0-9a-f]{16}$/.test(id) && id !== '0000000000000000' ? id : undefined
}

export class PresetIdGenerator implements IdGenerator {
  private readonly random = new RandomIdGenerator()
  generateTraceId(): string {
    return this.random.generateTraceId()
  }
  generateSpanId(): string {
    const id = preset
    if (id === undefined) return this.random.generateSpanId()
    preset = undefined
    return id
  }
}
