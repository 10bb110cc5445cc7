/**
 * `spanserve router` (`npm run router`): an OpenAI-compatible front for N spanserve instances with
 * SGLang's cache-aware routing, or for prefill and decode instances paired per request (prefill/decode
 * disaggregation). Wiring only: flags (config.ts), instances and their health (instances.ts), the
 * policy (policy.ts, radix-tree.ts), forwarding (proxy.ts, over upstream.ts), the HTTP app (app.ts),
 * metrics (metrics.ts), all put together by assemble.ts, and the drain (drain.ts).
 */
import { ConfigError } from '../config/config-error.ts'
import { tracingOptions } from '../config/tracing.ts'
import { createLogger } from '../logging.ts'
import { initTracing } from '../tracing/index.ts'
import { assembleRouter } from './assemble.ts'
import { parseRouterConfig, routerHelp, type RouterConfig } from './config.ts'
import { drainOnSignals } from './drain.ts'

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
  // The drain needs the instances' load and the app the drain's state: the closure reads it once both exist.
  let drain: ReturnType<typeof drainOnSignals> | undefined
  const { app, instances, prefill, policy, all, start, stop } = await assembleRouter(config, log, { isShuttingDown: () => drain?.stopping() ?? false })
  drain = drainOnSignals(() => all().reduce((n, i) => n + i.load, 0), shared.shutdownTimeout * 1000, log)
  await start()
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
  drain.onSignals(app, stop)
}
