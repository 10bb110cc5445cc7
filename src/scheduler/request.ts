import type { TokenizedGenerateReqInput } from '../ipc/messages.ts'
import type { KvHold } from './kv-space.ts'

/** Everything the scheduler knows of one request (TGI's queue entry). */
export interface SchedRequest extends Omit<TokenizedGenerateReqInput, 'type'> {
  /** Prompt tokens sent to the worker's KV cache (in steps done or in flight). */
  prefilled: number
  /** Tokens generated so far (answers received). */
  generated: number
  /** Tokens that the steps sent so far will have generated (more than `generated` while steps are in flight). */
  scheduled: number
  /** The last generated token: the next decode step's input. */
  lastToken: number
  /** KV tokens the request needs: prompt + max_tokens (less its cached prefix, in the budget). */
  reserved: number
  /** Its KV while admitted: block table, cached prefix, budget charge. */
  kv: KvHold | null
  /** Prompt tokens found in the prefix cache at admission (on a decode instance: the prefill instance's). */
  cachedTokens: number
  /** Where its first prefill chunk starts: its cached prefix, or (decode instance) past the KV transferred. */
  firstChunk: number
  enqueuedAt: number
  admittedAt: number
  /** Time in the model, summed over the steps this request took part in. */
  prefillMs: number
  decodeMs: number
}
