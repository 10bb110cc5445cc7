/**
 * `npm start`: parse the configuration, resolve the model, start and supervise the child processes,
 * and open the HTTP port only once every process is ready. Wiring only: each step is its own module.
 */
import { useIpcSecret } from '../ipc/curve.ts'
import { planEndpoints } from '../ipc/endpoints.ts'
import { createLogger } from '../logging.ts'
import { initTracing, setTraceVerdictSink } from '../tracing/index.ts'
import { tracingOptions } from '../config/tracing.ts'
import { buildApp } from './http/app.ts'
import { appOptions } from './http/app-options.ts'
import { runNodeAgent } from './supervisor/node-agent.ts'
import { startPipeline } from './supervisor/pipeline.ts'
import { drainOnSignals, stopOnSignals } from './supervisor/shutdown.ts'
import { configOrExit, listenOrExit, modelOrExit, resolveBootstrapPort } from './supervisor/startup.ts'

const config = configOrExit(process.argv.slice(2))
if (config !== null) {
  process.title = 'spanserve::server'
  useIpcSecret(config.ipcSecret)
  const log = createLogger(config.logLevel, { role: 'server' })
  // Before Fastify exists, so @fastify/otel finds the global tracer provider.
  await initTracing(tracingOptions(config), { role: 'server' }, { log })
  const { model, contextLength } = await modelOrExit(config, log)
  const endpoints = planEndpoints(config.ipc, { dpSize: config.dpSize, tpSize: config.tpSize, nodeHosts: config.nnodes > 1 ? config.nodeHosts : [] })
  if (config.nodeRank > 0) {
    // Not node 0: no HTTP, no tokenizer or scheduler; only this node's workers.
    stopOnSignals(await runNodeAgent(config, endpoints, model, contextLength, log))
  } else {
    await resolveBootstrapPort(config)
    const pipeline = await startPipeline(config, endpoints, model, contextLength, log)
    // Tail sampling (--trace-keep): the server's verdicts reach every child, batched.
    setTraceVerdictSink((keep, drop) => pipeline.launcher.broadcast({ type: 'trace_verdict', keep, drop }))
    const drain = drainOnSignals(pipeline, config.shutdownTimeout * 1000, log)
    const app = await buildApp(appOptions(config, model, contextLength, pipeline, drain.stopping, log))
    const port = await listenOrExit(app, config, pipeline, log)
    log.info({ host: config.host, port, model: model.dir, contextLength }, 'spanserve listening')
    drain.onSignals(app)
  }
}
