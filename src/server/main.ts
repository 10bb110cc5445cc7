/**
 * `npm start`: parse the configuration, resolve the model, start and supervise the child processes,
 * and open the HTTP port only once every process is ready.
 */
import { rmSync } from 'node:fs'
import { parseConfig, helpText, ConfigError } from '../config/parse.ts'
import type { Config } from '../config/schema.ts'
import { planEndpoints } from '../ipc/endpoints.ts'
import { useIpcSecret } from '../ipc/curve.ts'
import { Inbox, Outbox } from '../ipc/channel.ts'
import { createLogger, type Logger } from '../logging.ts'
import { ensureModel } from '../model/build.ts'
import { ensureShards } from '../model/tp/shard-cache.ts'
import { readModelInfo, type ModelInfo } from '../model/load.ts'
import { SpanserveError } from '../errors.ts'
import { Engine } from './engine.ts'
import { Launcher } from './launcher.ts'
import { buildApp } from './app.ts'
import { generationDefaults } from '../sampling/defaults.ts'
import { ServerMetrics } from './metrics.ts'
import { resumeReport } from './resume-report.ts'
import { runNodeAgent } from './node-agent.ts'
import { initTracing, shutdownTracing } from '../tracing/index.ts'
import { tracingOptions } from '../config/tracing.ts'

async function resolveModel(config: Config, log: Logger): Promise<ModelInfo> {
  const dir = config.model || (await ensureModel({ preset: config.modelPreset, cacheDir: config.cacheDir || undefined, log: (line) => log.info(line) }))
  return readModelInfo(dir)
}

async function main(): Promise<void> {
  let config: Config
  try {
    const parsed = parseConfig(process.argv.slice(2))
    if (parsed.help) {
      process.stdout.write(helpText())
      return
    }
    config = parsed.config
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`spanserve: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  process.title = 'spanserve::server'
  useIpcSecret(config.ipcSecret)
  const log = createLogger(config.logLevel, { role: 'server' })
  // Before Fastify exists, so @fastify/otel finds the global tracer provider.
  await initTracing(tracingOptions(config), { role: 'server' }, { log })
  let model: ModelInfo
  try {
    model = await resolveModel(config, log)
  } catch (err) {
    log.fatal({ code: (err as { code?: string }).code }, (err as Error).message)
    process.exit(1)
  }
  if (config.tpSize > 1) {
    // Shard once, here, so that no worker ever loads the whole model; a model that cannot be
    // sharded stops the start with the reason.
    try {
      await ensureShards(model.dir, config.tpSize, { log: (line) => log.info(line) })
    } catch (err) {
      log.fatal({ code: (err as { code?: string }).code }, (err as Error).message)
      process.exit(1)
    }
  }
  const contextLength = config.contextLength > 0 ? Math.min(config.contextLength, model.maxPositions) : model.maxPositions
  const endpoints = planEndpoints(config.ipc, { dpSize: config.dpSize, tpSize: config.tpSize, nodeHosts: config.nnodes > 1 ? config.nodeHosts : [] })
  if (config.nodeRank > 0) {
    // Not node 0: no HTTP, no tokenizer or scheduler; only this node's workers.
    const stop = await runNodeAgent(config, endpoints, model, contextLength, log)
    const shutdown = async () => {
      await stop()
      await shutdownTracing()
      process.exit(0)
    }
    process.on('SIGTERM', () => void shutdown())
    process.on('SIGINT', () => void shutdown())
    return
  }
  const toTokenizer = new Outbox(endpoints.tokenizer)
  let launcher: Launcher
  const engine = new Engine(toTokenizer, {
    serving: () => launcher.serving(),
    brokenReason: () => launcher.brokenReason(),
    restartWaitMs: config.restartWait * 1000,
  })
  const metrics = new ServerMetrics(() => engine.size)
  engine.observer = resumeReport(metrics, log)
  // Deaths and restarts reach the engine, which resumes the requests lost and dispatches those waiting.
  launcher = new Launcher(config, endpoints, model, contextLength, log, { died: (key, pid) => engine.processDied(key, pid), changed: () => engine.servingChanged() }, toTokenizer)
  const inbox = new Inbox(
    endpoints.server,
    {
      ready: (msg) => launcher.onReady(msg),
      fatal: (msg) => launcher.onFatal(msg),
      batch_str: (msg) => engine.onBatch(msg),
      req_error: (msg) => engine.onError(msg),
      tokenize_out: (msg) => engine.tokenizeCalls.onOutput(msg),
      process_stats: (msg) => {
        launcher.onHeartbeat(msg)
        metrics.onProcessStats(msg)
      },
      process_exited: (msg) => launcher.onRemoteExit(msg),
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()

  const cleanup = () => {
    inbox.close()
    toTokenizer.close()
    if (endpoints.runDir) rmSync(endpoints.runDir, { recursive: true, force: true })
  }
  try {
    await launcher.start(config.startupTimeout * 1000)
  } catch (err) {
    log.fatal({ code: (err as { code?: string }).code }, `start-up failed: ${(err as Error).message}`)
    await launcher.stop(2000)
    cleanup()
    process.exit(1)
  }

  let stopping = false
  const app = await buildApp({
    log,
    auth: { apiKey: config.apiKey, adminApiKey: config.adminApiKey, protectMetrics: config.protectMetrics },
    perimeter: {
      headersTimeoutMs: config.headersTimeout * 1000,
      bodyTimeoutMs: config.bodyTimeout * 1000,
      maxHeaders: config.maxHeaders,
      maxConnectionsPerClient: config.maxConnectionsPerClient,
    },
    traceExcludeUrls: config.traceEnable ? config.traceExcludeUrls : null,
    broadcast: (msg) => launcher.broadcast(msg),
    isShuttingDown: () => stopping,
    bodyLimit: config.bodyLimit,
    engine,
    info: {
      modelName: config.servedModelName,
      defaults: generationDefaults(model.dir),
      requestTimeoutMs: config.requestTimeout * 1000,
      streamBufferLimit: config.streamBufferLimit,
      streamStallTimeoutMs: config.streamStallTimeout * 1000,
      kvBudgetTokens: config.maxTotalTokens,
      metrics,
    },
    contextLength,
    status: () => ({ ready: launcher.allReady(), processes: launcher.list(), reports: metrics.processStats() }),
  })
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`)
    await launcher.stop(2000)
    cleanup()
    process.exit(1)
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  log.info({ host: config.host, port, model: model.dir, contextLength }, 'spanserve listening')

  const shutdown = async (signal: string) => {
    if (stopping) {
      // A second signal: stop waiting for the requests in flight.
      log.warn({ signal }, 'second signal: stopping now')
      await launcher.stop(0)
      cleanup()
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down')
    const grace = config.shutdownTimeout * 1000
    // Stop accepting, let requests in flight finish within the grace period, then end the children.
    const closing = app.close()
    const deadline = Date.now() + grace
    while (engine.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    engine.failAll(new SpanserveError('SPANSERVE_ERR_SHUTTING_DOWN'))
    await closing
    await launcher.stop(Math.max(1000, deadline - Date.now()))
    await shutdownTracing()
    cleanup()
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))
}

await main()
