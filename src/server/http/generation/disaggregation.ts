/**
 * Prefill/decode disaggregation at the HTTP layer: the bootstrap fields the router sets (SGLang's
 * names), read by the instance's --disaggregation-mode. A prefill instance needs all three and
 * answers one token (it computes the prompt's KV, which its worker sends to the decode instance); a
 * decode instance given a room waits for that KV, and without one serves the request itself. A
 * co-located instance ignores the fields. Each choice of n > 1 would need a room of its own: refused.
 */
import type { Bootstrap } from '../../../ipc/messages.ts'
import { SpanserveError } from '../../../errors.ts'
import type { BootstrapFields } from '../schemas.ts'

export type DisaggregationMode = 'null' | 'prefill' | 'decode'

function invalid(message: string, param: string): SpanserveError {
  return new SpanserveError('SPANSERVE_ERR_VALIDATION', message, param)
}

/** The request's bootstrap, or null when it runs co-located; throws a 400 naming the field at fault. */
export function bootstrapOf(body: BootstrapFields, mode: DisaggregationMode, sequences: number): Bootstrap | null {
  if (mode === 'null') return null
  const room = body.bootstrap_room ?? null
  if (mode === 'prefill') {
    for (const field of ['bootstrap_room', 'bootstrap_host', 'bootstrap_port'] as const) {
      if (body[field] == null) throw invalid(`${field} is required: this is a prefill instance (--disaggregation-mode prefill), which serves requests the router pairs with a decode instance`, field)
    }
  }
  if (room === null) return null
  if (sequences > 1) throw invalid('n (or best_of) above 1 cannot be disaggregated: each sequence would need a bootstrap room of its own', 'n')
  return mode === 'prefill' ? { room, host: body.bootstrap_host!, port: body.bootstrap_port! } : { room, host: null, port: null }
}
