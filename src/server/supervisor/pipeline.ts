/**
 * The server's side of the process pipeline: its outbox to the tokenizer, the engine that tracks
 * every request, the metrics, the launcher that starts and supervises the children, and the inbox
 * that routes what they send back. Started once every child is ready; a failed start ends the
 * children and exits 1.
 */
import { rmSync } from 'node:fs'
import type { Config } from '../../config/schema.ts'
import type { Endpoints } from '../../ipc/endpoints.ts'
import { Inbox, Outbox } from '../../ipc/channel.ts'
import type { Logger } from '../../logging.ts'
import type { ModelInfo } from '../../model/load.ts'
import { PipelineEngineClient } from '../engine-client/engine-client.ts'
import { Launcher } from './launcher.ts'
import { TraceDumps } from './trace-dump.ts'
import { ServerMetrics } from '../engine-client/metrics.ts'
import { resumeReport } from '../engine-client/resume-report.ts'
import { isTracingEnabled } from '../../tracing/setup.ts'
import { journalChildren, recoverOrphanSpans } from '../../tracing/orphan-spans.ts'

export interface Pipeline {
  engine: PipelineEngineClient
  metrics: ServerMetrics
  launcher: Launcher
  /** POST /v1/trace/dump across the processes. */
  dumps: TraceDumps
  /** The most characters one token stands for (the tokenizer's ready line), null before it is known or where unbounded. */
  charsPerToken: () => number | null
  /** Closes the sockets and removes the ipc directory. */
  cleanup(): void
}

export async function startPipeline(config: Config, endpoints: Endpoints, model: ModelInfo, contextLength: number, log: Logger): Promise<Pipeline> {
  const toTokenizer = new Outbox(endpoints.tokenizer)
  // The launcher and the engine refer to each other: deaths resume requests, requests ask who serves
  // (only once requests arrive, after both exist).
  const engine = new PipelineEngineClient(toTokenizer, {
    serving: () => launcher.serving(),
    brokenReason: () => launcher.brokenReason(),
    restartWaitMs: config.restartWait * 1000,
  })
  const metrics = new ServerMetrics(() => engine.size)
  engine.observer = resumeReport(metrics, log)
  // With tracing on, each child journals the spans it queues; the server exports those a dead child
  // had not (src/tracing/orphan-spans.ts).
  const journals = isTracingEnabled() ? journalChildren(endpoints.runDir) : undefined
  const exited = (key: string, pid: number) => {
    if (journals === undefined) return
    void recoverOrphanSpans(journals.dir, key, pid).then((n) => {
      if (n > 0) log.info({ child: key, child_pid: pid, spans: n }, 'exported the spans a dead process had not')
    })
  }
  const launcher = new Launcher(
    config,
    endpoints,
    model,
    contextLength,
    log,
    { died: (key, pid, cause) => engine.processDied(key, pid, cause), changed: () => engine.servingChanged(), exited },
    toTokenizer,
  )
  let charsPerToken: number | null = null
  // A child's dump waits up to its tracing thread's own limit (5 s) and then its export.
  const dumps = new TraceDumps((msg) => launcher.broadcast(msg), 10_000)
  const inbox = new Inbox(
    endpoints.server,
    {
      ready: (msg) => {
        if (msg.role === 'tokenizer' && typeof msg.detail.charsPerToken === 'number') charsPerToken = msg.detail.charsPerToken
        launcher.onReady(msg)
      },
      fatal: (msg) => launcher.onFatal(msg),
      batch_str: (msg) => engine.onBatch(msg),
      req_error: (msg) => engine.onError(msg),
      slice_marks: (msg) => engine.onSliceMarks(msg),
      tokenize_out: (msg) => engine.tokenizeCalls.onOutput(msg),
      process_stats: (msg) => {
        launcher.onHeartbeat(msg)
        metrics.onProcessStats(msg)
      },
      process_exited: (msg) => launcher.onRemoteExit(msg),
      trace_dumped: (msg) => dumps.onReply(msg),
    },
    (err) => log.error({ err }, 'bad message'),
  )
  await inbox.bind()
  const cleanup = () => {
    inbox.close()
    toTokenizer.close()
    if (endpoints.runDir) rmSync(endpoints.runDir, { recursive: true, force: true })
    journals?.remove()
  }
  try {
    await launcher.start(config.startupTimeout * 1000)
  } catch (err) {
    log.fatal({ code: (err as { code?: string }).code }, `start-up failed: ${(err as Error).message}`)
    await launcher.stop(2000)
    cleanup()
    process.exit(1)
  }
  return { engine, metrics, launcher, dumps, charsPerToken: () => charsPerToken, cleanup }
}
