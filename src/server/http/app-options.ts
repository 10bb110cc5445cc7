/** What the Fastify app is built from: the configuration's server flags, the model and the pipeline. */
import type { Config } from '../../config/schema.ts'
import type { Logger } from '../../logging.ts'
import type { ModelInfo } from '../../model/load.ts'
import { generationDefaults } from '../../sampling/defaults.ts'
import type { AppOptions } from './app.ts'
import type { Pipeline } from '../supervisor/pipeline.ts'
import type { ToolCallParserName } from './tool-calls/parsers.ts'
import type { ReasoningParserName } from './reasoning/parsers.ts'
import type { DisaggregationMode } from './generation/disaggregation.ts'

export function appOptions(config: Config, model: ModelInfo, contextLength: number, pipeline: Pipeline, isShuttingDown: () => boolean, log: Logger): AppOptions {
  const { engine, metrics, launcher } = pipeline
  return {
    log,
    auth: { apiKey: config.apiKey, adminApiKey: config.adminApiKey, protectMetrics: config.protectMetrics },
    perimeter: {
      headersTimeoutMs: config.headersTimeout * 1000,
      bodyTimeoutMs: config.bodyTimeout * 1000,
      maxHeaders: config.maxHeaders,
      maxConnectionsPerClient: config.maxConnectionsPerClient,
    },
    traceExcludeUrls: config.traceEnable ? config.traceExcludeUrls : null,
    // Three spans a request of little to say below full detail (the request and handler spans stay).
    traceHookSpans: config.traceLevel >= 3,
    broadcast: (msg) => launcher.broadcast(msg),
    dumpTraces: () => pipeline.dumps.dump(),
    isShuttingDown,
    bodyLimit: config.bodyLimit,
    engine,
    info: {
      modelName: config.servedModelName,
      defaults: generationDefaults(model.dir),
      requestTimeoutMs: config.requestTimeout * 1000,
      streamBufferLimit: config.streamBufferLimit,
      streamStallTimeoutMs: config.streamStallTimeout * 1000,
      kvBudgetTokens: config.maxTotalTokens,
      requestKvShare: config.maxRequestKvShare,
      contextLength,
      apiKeyConfigured: config.apiKey !== '',
      prefixCache: !config.disableRadixCache && config.enablePrefixCaching,
      toolCallParser: config.toolCallParser as ToolCallParserName,
      reasoningParser: config.reasoningParser as ReasoningParserName,
      disaggregationMode: config.disaggregationMode as DisaggregationMode,
      bootstrapPort: config.disaggregationBootstrapPort,
      metrics,
    },
    contextLength,
    charsPerToken: pipeline.charsPerToken,
    status: () => ({ ready: launcher.allReady(), processes: launcher.list(), reports: metrics.processStats() }),
  }
}
