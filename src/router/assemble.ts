/**
 * The router's parts from its configuration, as `spanserve router` runs them: the instance sets
 * (whole instances, or decode and prefill ones), metrics, policy, proxy and the HTTP app. main.ts
 * adds the listen, the drain and the signals; a test builds the same app in front of instances of its own.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from '../logging.ts'
import { buildRouterApp } from './app.ts'
import type { RouterConfig } from './config.ts'
import { type Instance, type InstanceRole, InstanceSet, resolveAddresses } from './instances.ts'
import { RouterMetrics } from './metrics.ts'
import type { PolicyOptions } from './policy.ts'
import { RouterProxy } from './proxy.ts'

export interface RouterParts {
  app: FastifyInstance
  /** The instances that answer: whole ones, or under disaggregation the decode ones. */
  instances: InstanceSet
  /** Under disaggregation, the prefill instances; else null. */
  prefill: InstanceSet | null
  proxy: RouterProxy
  policy: PolicyOptions
  /** Every instance, both sides. */
  all: () => Instance[]
  /** Starts the health checks (and DNS), once. */
  start: () => Promise<void>
  /** Stops them and the proxy's pooled connections. */
  stop: () => void
}

export interface AssembleOptions {
  /** True once the router drains (default: never). */
  isShuttingDown?: () => boolean
  /** DNS lookups (default: the system's A and AAAA records). */
  resolve?: (name: string) => Promise<string[]>
}

export async function assembleRouter(config: RouterConfig, log: Logger, opts: AssembleOptions = {}): Promise<RouterParts> {
  const { shared } = config
  const set = (source: { urls: readonly string[]; dns: RouterConfig['dns'] }, role: InstanceRole) =>
    new InstanceSet({
      urls: source.urls,
      dns: source.dns,
      resolve: opts.resolve ?? resolveAddresses,
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
  const app = await buildRouterApp({
    log,
    apiKey: shared.apiKey,
    perimeter: { headersTimeoutMs: shared.headersTimeout * 1000, bodyTimeoutMs: shared.bodyTimeout * 1000, maxHeaders: shared.maxHeaders, maxConnectionsPerClient: shared.maxConnectionsPerClient },
    bodyLimit: shared.bodyLimit,
    traceExcludeUrls: shared.traceEnable ? shared.traceExcludeUrls : null,
    isShuttingDown: opts.isShuttingDown ?? (() => false),
    instances,
    prefill,
    metrics,
    proxy,
  })
  return {
    app,
    instances,
    prefill,
    proxy,
    policy,
    all,
    start: async () => void (await Promise.all([instances.start(), prefill?.start()])),
    stop: () => {
      instances.stop()
      prefill?.stop()
      proxy.close()
    },
  }
}
