/** What the generation routes need to know about the running server. */
import type { SamplingDefaults } from '../sampling/defaults.ts'
import type { ServerMetrics } from './metrics.ts'
import type { ToolCallParserName } from './tool-calls/parsers.ts'

export interface ServingInfo {
  modelName: string
  /** Milliseconds a request may run; 0: no limit. */
  requestTimeoutMs: number
  /** Bytes a stream may buffer for a slow reader. */
  streamBufferLimit: number
  /** Milliseconds a stream may wait for a client that stopped reading before it is dropped. */
  streamStallTimeoutMs: number
  metrics: ServerMetrics
  /** Sampling defaults from the model's generation_config.json, as vLLM applies them. */
  defaults: SamplingDefaults
  /** --max-total-tokens: what n × max_tokens may not exceed (absent: not checked here). */
  kvBudgetTokens?: number
  /** The prefix cache is on: the n sequences of a request share their prompt's prefill (choices.ts). */
  prefixCache: boolean
  /** --tool-call-parser (absent: hermes). */
  toolCallParser?: ToolCallParserName
}
