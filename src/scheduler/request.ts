import type { TokenizedGenerateReqInput } from '../ipc/messages.ts'

/** Everything the scheduler knows of one request (TGI's queue entry). */
export interface SchedRequest extends Omit<TokenizedGenerateReqInput, 'type'> {
  /** Prompt tokens already in the worker's KV cache. */
  prefilled: number
  /** Tokens generated so far. */
  generated: number
  /** The last generated token: the next decode step's input. */
  lastToken: number
  /** KV tokens reserved in the budget: prompt + max_tokens. */
  reserved: number
  enqueuedAt: number
  admittedAt: number
  /** Time in the model, summed over the steps this request took part in. */
  prefillMs: number
  decodeMs: number
}
