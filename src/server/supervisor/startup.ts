/**
 * The server's start, before any child runs: the configuration from the command line (or --help),
 * and the model to serve, built or read, and sharded once here under --tp-size so that no worker
 * ever loads the whole model; then, once the children are up, the HTTP port. A failure stops the
 * start with one message and the exit code users script against (2 for a usage error, 1 otherwise).
 */
import { parseConfig, helpText, ConfigError } from '../../config/parse.ts'
import type { Config } from '../../config/schema.ts'
import type { Logger } from '../../logging.ts'
import { ensureModel } from '../../model/build.ts'
import { ensureShards } from '../../model/tp/shard-cache.ts'
import { readModelInfo, type ModelInfo } from '../../model/load.ts'
import type { FastifyInstance } from 'fastify'
import { createServer, type AddressInfo } from 'node:net'
import type { Pipeline } from './pipeline.ts'

/** The configuration, or null after printing --help. A bad flag exits 2 with its message. */
export function configOrExit(argv: string[]): Config | null {
  try {
    const parsed = parseConfig(argv)
    if (parsed.help) {
      process.stdout.write(helpText())
      return null
    }
    return parsed.config
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`spanserve: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

/** The served model, ready for its workers; exits 1 with the reason when it cannot be. */
export async function modelOrExit(config: Config, log: Logger): Promise<{ model: ModelInfo; contextLength: number }> {
  try {
    const dir = config.model || (await ensureModel({ preset: config.modelPreset, cacheDir: config.cacheDir || undefined, log: (line) => log.info(line) }))
    const model = readModelInfo(dir, config.onnxFile)
    // A model that cannot be sharded stops the start with the reason.
    if (config.tpSize > 1) await ensureShards(model.dir, config.tpSize, { log: (line) => log.info(line) })
    const contextLength = config.contextLength > 0 ? Math.min(config.contextLength, model.maxPositions) : model.maxPositions
    return { model, contextLength }
  } catch (err) {
    log.fatal({ code: (err as { code?: string }).code }, (err as Error).message)
    process.exit(1)
  }
}

/** Opens the HTTP port; when it cannot be had, ends the children and exits 1. Returns the port bound. */
export async function listenOrExit(app: FastifyInstance, config: Config, pipeline: Pipeline, log: Logger): Promise<number> {
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`)
    await pipeline.launcher.stop(2000)
    pipeline.cleanup()
    process.exit(1)
  }
  const address = app.server.address()
  return typeof address === 'object' && address ? address.port : config.port
}

/**
 * A decode instance's bootstrap port of 0 becomes a free port now, before any child starts: its
 * worker binds it, and keeps it across restarts, and GET /health reports it to the router.
 */
export async function resolveBootstrapPort(config: Config): Promise<void> {
  if (config.disaggregationMode !== 'decode' || config.disaggregationBootstrapPort !== 0) return
  config.disaggregationBootstrapPort = await new Promise<number>((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, config.host, () => {
      const port = (probe.address() as AddressInfo).port
      probe.close(() => resolve(port))
    })
  })
}
