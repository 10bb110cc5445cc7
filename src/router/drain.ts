/**
 * SIGTERM and SIGINT: stop accepting (new requests get 503 while the port closes), let the requests
 * in flight finish within --shutdown-timeout, flush the spans, exit 0. A second signal exits 1 at once.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from '../logging.ts'
import { shutdownTracing } from '../tracing/index.ts'

export interface RouterDrain {
  stopping(): boolean
  /** Installs the signal handlers, once the router is listening. */
  onSignals(app: FastifyInstance, stopInstances: () => void): void
}

/** `inFlight`: requests the router has on its instances now. */
export function drainOnSignals(inFlight: () => number, graceMs: number, log: Logger): RouterDrain {
  let stopping = false
  const shutdown = async (app: FastifyInstance, stopInstances: () => void, signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: stopping now')
      process.exit(1)
    }
    stopping = true
    log.info({ signal, in_flight: inFlight() }, 'router shutting down')
    const closing = app.close()
    const deadline = Date.now() + graceMs
    while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (inFlight() > 0) log.warn({ in_flight: inFlight() }, 'router: --shutdown-timeout passed with requests in flight')
    // Connections still open after the deadline are cut: the process is leaving.
    app.server.closeAllConnections()
    await closing
    stopInstances()
    await shutdownTracing()
    process.exit(0)
  }
  return {
    stopping: () => stopping,
    onSignals: (app, stopInstances) => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(app, stopInstances, signal))
    },
  }
}
