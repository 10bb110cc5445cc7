/**
 * `spanserve router` (`npm run router`): an OpenAI-compatible front for N spanserve instances with
 * SGLang's cache-aware routing. Wiring only: flags (config.ts), instances and their health
 * (instances.ts), the policy (policy.ts, radix-tree.ts), forwarding (proxy.ts), the HTTP app (app.ts),
 * metrics (metrics.ts) and the drain (drain.ts).
 */
import { ConfigError } from '../config/config-error.ts'
import { tracingOptions } from '../config/tracing.ts'
import { createLogger } from '../logging.ts'
import { initTracing } from '../tracing/index.ts'
import { buildRouterApp } from './app.ts'
import { parseRouterConfig, routerHelp, type RouterConfig } from './config.ts'
import { drainOnSignals } from './drain.ts'
import { InstanceSet, resolveAddresses } from './instances.ts'
import { RouterMetrics } from './metrics.ts'
import { RouterProxy } from './proxy.ts'

function configOrExit(): RouterConfig | null {
  try {
    const { config, help } = parseRouterConfig(process.argv.slice(2))
    if (!help) return config
    process.stdout.write(routerHelp())
    return null
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`spanserve router: ${err.message}\n`)
    process.exit(2)
  }
}

const config = configOrExit()
if (config !== null) {
  process.title = 'spanserve::router'
  const { shared } = config
  const log = createLogger(shared.logLevel, { role: 'router' })
  // Before Fastify exists, so @fastify/otel finds the global tracer provider.
  await initTracing(tracingOptions(shared), { role: 'router' }, { log })
  const instances = new InstanceSet({
    urls: config.instances,
    dns: config.dns,
    resolve: resolveAddresses,
    healthIntervalMs: config.healthCheckInterval * 1000,
    healthTimeoutMs: config.healthCheckTimeout * 1000,
    dnsIntervalMs: config.dnsInterval * 1000,
    maxTreeChars: config.maxTreeSize,
    log,
  })
  const metrics = new RouterMetrics(() => instances.list())
  const policy = { policy: config.policy, cacheThreshold: config.cacheThreshold, balanceAbsThreshold: config.balanceAbsThreshold, balanceRelThreshold: config.balanceRelThreshold }
  const proxy = new RouterProxy({ instances, policy, metrics, log, apiKeyConfigured: shared.apiKey !== '' })
  const drain = drainOnSignals(() => instances.list().reduce((n, i) => n + i.load, 0), shared.shutdownTimeout * 1000, log)
  const app = await buildRouterApp({
    log,
    apiKey: shared.apiKey,
    perimeter: { headersTimeoutMs: shared.headersTimeout * 1000, bodyTimeoutMs: shared.bodyTimeout * 1000, maxHeaders: shared.maxHeaders, maxConnectionsPerClient: shared.maxConnectionsPerClient },
    bodyLimit: shared.bodyLimit,
    traceExcludeUrls: shared.traceEnable ? shared.traceExcludeUrls : null,
    isShuttingDown: drain.stopping,
    instances,
    metrics,
    proxy,
  })
  await instances.start()
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`)
    process.exit(1)
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  log.info({ host: config.host, port, instances: instances.list().map((i) => i.url), healthy: instances.healthy().length, policy }, 'spanserve router listening')
  drain.onSignals(app, () => instances.stop())
}
