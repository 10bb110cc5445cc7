/** What the generation routes need to know about the running server. */
import type { SamplingDefaults } from '../../sampling/defaults.ts'
import type { ServerMetrics } from '../engine-client/metrics.ts'
import type { ToolCallParserName } from './tool-calls/parsers.ts'
import type { ReasoningParserName } from './reasoning/parsers.ts'
import type { DisaggregationMode } from './generation/disaggregation.ts'

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
  /** --max-request-kv-share: the share of kvBudgetTokens one request of several sequences may reserve (absent: 1). */
  requestKvShare?: number
  /** The model's context length: what a max_tokens left to "the rest of the context" reserves. */
  contextLength?: number
  /** --api-key is set: every client sends that key, so it cannot tell clients apart (client-id.ts). */
  apiKeyConfigured?: boolean
  /** The prefix cache is on: the n sequences of a request share their prompt's prefill (generation/responder.ts). */
  prefixCache: boolean
  /** --tool-call-parser (absent: hermes). */
  toolCallParser?: ToolCallParserName
  /** --disaggregation-mode (absent: null, co-located). */
  disaggregationMode?: DisaggregationMode
  /** Decode instance: the port where prefill instances send KV (--disaggregation-bootstrap-port, resolved). */
  bootstrapPort?: number
  /** --reasoning-parser (absent: none). */
  reasoningParser?: ReasoningParserName
}
