/**
 * The Fastify app as the real server builds it (the server flags parsed by parseConfig, mapped by
 * appOptions, built by buildApp), over a ScriptedEngine instead of the process pipeline: route tests
 * through inject() that take a few milliseconds each.
 */
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { parseConfig } from '../../src/config/parse.ts'
import { createLogger, type Logger } from '../../src/logging.ts'
import { decode, encode } from '../../src/ipc/codec.ts'
import type { ProcessStats, TraceSetting } from '../../src/ipc/messages.ts'
import type { ModelInfo } from '../../src/model/load.ts'
import { ServerMetrics } from '../../src/server/engine-client/metrics.ts'
import { buildApp, type AppOptions } from '../../src/server/http/app.ts'
import { appOptions } from '../../src/server/http/app-options.ts'
import type { ChildInfo } from '../../src/server/supervisor/launcher.ts'
import type { Pipeline } from '../../src/server/supervisor/pipeline.ts'
import { ScriptedEngine } from './scripted-engine.ts'

export interface ScriptedAppConfig {
  /** Server flags, as `npm start -- …` takes them. */
  argv?: string[]
  /** Environment variables the configuration reads (SPANSERVE_API_KEY, …); the process's own are not read. */
  env?: NodeJS.ProcessEnv
  /** The model directory (its generation_config.json gives the sampling defaults); absent: none, OpenAI's defaults. */
  modelDir?: string
  contextLength?: number
  /** The tokenizer's characters-per-token bound from its ready line (absent: not known yet, no precheck). */
  charsPerToken?: number
  log?: Logger
  isShuttingDown?: () => boolean
}

/** What the launcher tells /health; a test changes it to see /health follow. */
export interface LauncherState {
  ready: boolean
  processes: ChildInfo[]
}

export interface ScriptedApp {
  app: FastifyInstance
  engine: ScriptedEngine
  metrics: ServerMetrics
  launcher: LauncherState
  /** Trace settings sent to every process (POST /v1/trace/setting), as the children decode them. */
  broadcasts: TraceSetting[]
  options: AppOptions
}

export const CONTEXT_LENGTH = 2048

function child(key: string, role: string, pid: number): ChildInfo {
  return { key, role, node: 0, pid, ready: true, restarts: 0, circuitOpen: false }
}

/** AppOptions as src/server/main.ts makes them, with `engine` in place of the pipeline's. */
export function scriptedAppOptions(engine: ScriptedEngine, c: ScriptedAppConfig = {}): Omit<ScriptedApp, 'app'> {
  const { config } = parseConfig(c.argv ?? [], c.env ?? {})
  const metrics = new ServerMetrics(() => engine.live)
  const launcher: LauncherState = { ready: true, processes: [child('tokenizer', 'tokenizer', 101), child('scheduler-0', 'scheduler', 102), child('worker-0-0', 'worker', 103)] }
  const broadcasts: TraceSetting[] = []
  // appOptions reads these members of the pipeline only; the cast stands for the rest of it.
  const pipeline = {
    engine,
    metrics,
    launcher: {
      broadcast: (msg: TraceSetting) => broadcasts.push(decode(encode(msg)) as TraceSetting),
      allReady: () => launcher.ready,
      list: () => launcher.processes,
    },
    charsPerToken: () => c.charsPerToken ?? null,
  } as unknown as Pipeline
  const model = { dir: c.modelDir ?? '/nonexistent/spanserve-test-model' } as ModelInfo
  const log = c.log ?? createLogger('silent', { role: 'server' })
  const options = appOptions(config, model, c.contextLength ?? CONTEXT_LENGTH, pipeline, c.isShuttingDown ?? (() => false), log)
  return { engine, metrics, launcher, broadcasts, options }
}

/** The app over a fresh ScriptedEngine, closed when the test ends. */
export async function scriptedApp(t: Test, c: ScriptedAppConfig = {}, engine = new ScriptedEngine()): Promise<ScriptedApp> {
  const parts = scriptedAppOptions(engine, c)
  const app = await buildApp(parts.options)
  t.teardown(() => app.close())
  await app.ready()
  return { app, ...parts }
}

/** A logger whose JSON lines the test reads. */
export function capturedLogger(level = 'info'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const log = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  return { log, lines }
}

/** A process report as a child sends it every --stats-interval, checked by the codec. */
export function processStats(over: Partial<ProcessStats> & Pick<ProcessStats, 'role'>): ProcessStats {
  const s: ProcessStats = {
    type: 'process_stats',
    dpRank: 0,
    tpRank: 0,
    pid: 4242,
    rssBytes: 1e8,
    heapUsedBytes: 1e7,
    externalBytes: 1e6,
    liveRequests: 0,
    tracedRequests: 0,
    droppedSpans: 0,
    scheduler: null,
    worker: null,
    ...over,
  }
  return decode(encode(s)) as ProcessStats
}

/** A JSON POST through inject(). */
export function post(app: FastifyInstance, url: string, body: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, payload: body as Record<string, unknown>, headers })
}

/** OpenAI's error body of a response. */
export function errorOf(res: { json: () => unknown }): { message: string; type: string; param: string | null; code: string } {
  return (res.json() as { error: { message: string; type: string; param: string | null; code: string } }).error
}
