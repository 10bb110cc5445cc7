/**
 * Where each message kind carries a request's trace context. The channel fills those carriers as a
 * message leaves (Outbox.post) from the sending process's own context for the request, so that the
 * next process's part of the trace hangs under this one's; no handler copies contexts by hand. The
 * table names every kind, so a new one must say whether it carries a request.
 */
import type { Message, MessageOf, MessageType } from './messages.ts'
import type { TraceCarrier } from '../tracing/propagation.ts'

interface CarrierSlot {
  rid: string
  trace: TraceCarrier | null
}

type Slots<T extends MessageType> = ((msg: MessageOf<T>) => Iterable<CarrierSlot>) | null

const one = (msg: CarrierSlot): CarrierSlot[] => [msg]

const TRACE_CARRIERS = {
  generate: one,
  tokenized: one,
  // A request's first chunk (the one with its sampling) opens its part of the trace on the worker.
  forward: (msg) => msg.prefill.filter((e) => e.sampling !== null),
  abort: null,
  forward_out: null,
  batch_token_ids: null,
  batch_str: null,
  req_error: null,
  grammar_prepare: null,
  grammar_ready: null,
  grammar_cancel: null,
  ready: null,
  fatal: null,
  process_stats: null,
  slice_marks: null,
  process_exited: null,
  restart_process: null,
  trace_setting: null,
  trace_verdict: null,
  trace_dump: null,
  trace_dumped: null,
  group_state: null,
  reset: null,
  tokenize: null,
  tokenize_out: null,
  // The decode instance's worker opens its part of the trace when it starts waiting for the KV.
  kv_expect: one,
  kv_cancel: null,
  kv_arrived: null,
  // Carries the prefill worker's context as built at the send (not the channel's).
  kv_transfer: null,
} satisfies { [T in MessageType]: Slots<T> }

/**
 * Sets each carrier of `msg` to `current(rid)`, the sender's context for that request, where it has
 * one; a carrier the sender has no context for passes on as it came (the request is not traced here).
 */
export function fillCarriers(msg: Message, current: (rid: string) => TraceCarrier | null): void {
  const slots = TRACE_CARRIERS[msg.type] as Slots<MessageType>
  if (slots === null) return
  for (const slot of slots(msg as never)) slot.trace = current(slot.rid) ?? slot.trace
}
