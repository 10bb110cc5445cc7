/**
 * `spanserve router` (`npm run router`): an OpenAI-compatible front for N spanserve instances with
 * SGLang's cache-aware routing, or for prefill and decode instances paired per request (prefill/decode
 * disaggregation). Wiring only: flags (config.ts), instances and their health (instances.ts), the
 * policy (policy.ts, radix-tree.ts), forwarding (proxy.ts, over upstream.ts), the HTTP app (app.ts),
 * metrics (metrics.ts) and the drain (drain.ts).
 */
import { ConfigError } from '../config/config-error.ts'
import { tracingOptions } from '../config/tracing.ts'
import { createLogger } from '../logging.ts'
import { initTracing } from '../tracing/index.ts'
import { buildRouterApp } from './app.ts'
import { parseRouterConfig, routerHelp, type RouterConfig } from './config.ts'
import { drainOnSignals } from './drain.ts'
import { type InstanceRole, InstanceSet, resolveAddresses } from './instances.ts'
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
  const set = (source: { urls: readonly string[]; dns: RouterConfig['dns'] }, role: InstanceRole) =>
    new InstanceSet({
      urls: source.urls,
      dns: source.dns,
      resolve: resolveAddresses,
      healthIntervalMs: config.healthCheckInterval * 1000,
      healthTimeoutMs: config.healthCheckTimeout * 1000,
      dnsIntervalMs: config.dnsInterval * 1000,
      maxTreeChars: config.maxTreeSize,
      log,
      role,
    })
  // Under prefill/decode disaggregation, `instances` are the decode instances (they answer) and `prefill` the prefill ones.
  const instances = config.pd ? set(config.pd.decode, 'decode') : set({ urls: config.instances, dns: config.dns }, null)
  const prefill = config.pd ? set(config.pd.prefill, 'prefill') : null
  const all = () => (prefill ? [...prefill.list(), ...instances.list()] : instances.list())
  const metrics = new RouterMetrics(all)
  const policy = { policy: config.policy, cacheThreshold: config.cacheThreshold, balanceAbsThreshold: config.balanceAbsThreshold, balanceRelThreshold: config.balanceRelThreshold }
  const proxy = new RouterProxy({ instances, prefill, policy, metrics, log, apiKeyConfigured: shared.apiKey !== '' })
  const drain = drainOnSignals(() => all().reduce((n, i) => n + i.load, 0), shared.shutdownTimeout * 1000, log)
  const app = await buildRouterApp({
    log,
    apiKey: shared.apiKey,
    perimeter: { headersTimeoutMs: shared.headersTimeout * 1000, bodyTimeoutMs: shared.bodyTimeout * 1000, maxHeaders: shared.maxHeaders, maxConnectionsPerClient: shared.maxConnectionsPerClient },
    bodyLimit: shared.bodyLimit,
    traceExcludeUrls: shared.traceEnable ? shared.traceExcludeUrls : null,
    isShuttingDown: drain.stopping,
    instances,
    prefill,
    metrics,
    proxy,
  })
  await Promise.all([instances.start(), prefill?.start()])
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`)
    process.exit(1)
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  log.info(
    {
      host: config.host,
      port,
      ...(prefill ? { prefill: prefill.list().map((i) => i.url), decode: instances.list().map((i) => i.url) } : { instances: instances.list().map((i) => i.url) }),
      healthy: all().filter((i) => i.healthy).length,
      policy,
    },
    'spanserve router listening',
  )
  drain.onSignals(app, () => {
    instances.stop()
    prefill?.stop()
    proxy.close()
  })
}
