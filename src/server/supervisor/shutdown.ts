/**
 * SIGTERM and SIGINT: stop accepting, let the requests in flight finish within --shutdown-timeout,
 * fail what is left, end the children, flush the spans, exit 0. A second signal stops at once (exit 1).
 */
import type { FastifyInstance } from 'fastify'
import { SpanserveError } from '../../errors.ts'
import type { Logger } from '../../logging.ts'
import { shutdownTracing } from '../../tracing/index.ts'
import type { Pipeline } from './pipeline.ts'

export interface Drain {
  /** True once a signal arrived: new requests get 503 while those in flight finish. */
  stopping(): boolean
  /** Installs the signal handlers, once the HTTP server is listening. */
  onSignals(app: FastifyInstance): void
}

export function drainOnSignals(pipeline: Pipeline, graceMs: number, log: Logger): Drain {
  const { engine, launcher, cleanup } = pipeline
  let stopping = false
  const shutdown = async (app: FastifyInstance, signal: string) => {
    if (stopping) {
      // A second signal: stop waiting for the requests in flight.
      log.warn({ signal }, 'second signal: stopping now')
      await launcher.stop(0)
      cleanup()
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down')
    const closing = app.close()
    const deadline = Date.now() + graceMs
    while (engine.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    engine.failAll(new SpanserveError('SPANSERVE_ERR_SHUTTING_DOWN'))
    await closing
    await launcher.stop(Math.max(1000, deadline - Date.now()))
    await shutdownTracing()
    cleanup()
    process.exit(0)
  }
  return {
    stopping: () => stopping,
    onSignals: (app) => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(app, signal))
    },
  }
}

/** A node other than 0 runs only its workers: a signal stops them, flushes the spans and exits 0. */
export function stopOnSignals(stop: () => Promise<void>): void {
  const shutdown = async () => {
    await stop()
    await shutdownTracing()
    process.exit(0)
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown())
}
