/**
 * spanserve as users run it: the real server and its child processes (`src/server/main.ts`), tracing
 * off, or on (level 3 or 2) with every request sampled and exported over OTLP gRPC to a receiver in
 * another process (bench/otlp-sink.ts); optionally --dp-size 2, or from another checkout (--base).
 */
import { join } from 'node:path'
import { ROOT, startServer } from '../../harness/server.ts'
import { JsonLineChild, track } from '../child-lines.ts'

export interface SpanserveOptions {
  modelDir: string
  /** Tracing level, or null for tracing off. */
  traceLevel: 2 | 3 | null
  maxBatchSize: number
  /** Extra server flags (e.g. --intra-op-threads, --dp-size). */
  extraArgs: readonly string[]
  /** When set, every spanserve process writes a V8 CPU profile into this directory (bench/cpu-profile-hook.mjs). */
  cpuProfDir?: string
  /** Another checkout to run the server from (bench --base); default: this one. */
  root?: string
  sinkDecode?: 'deferred' | 'live'
}

export interface SpanserveStopped {
  /** Spans the receiver had counted once the server had stopped (tracing on only). */
  spans?: number
  exportRequests?: number
}

export interface RunningSpanserve {
  url: string
  /** Starts the CPU profilers of every process (cpuProfDir only). */
  startProfiling(): void
  /** Every process by role (server, tokenizer, scheduler-0, worker-0-0, …, and sink), for CPU accounting. */
  pids(): Record<string, number>
  stop(): Promise<SpanserveStopped>
}

export async function startSpanserve(opts: SpanserveOptions): Promise<RunningSpanserve> {
  let sink: JsonLineChild | null = null
  const args = ['--model', opts.modelDir, '--max-batch-size', String(opts.maxBatchSize), ...opts.extraArgs]
  if (opts.traceLevel !== null) {
    sink = JsonLineChild.start('otlp-sink', ['--import', 'tsx', join(ROOT, 'bench/otlp-sink.ts'), '--decode', opts.sinkDecode ?? 'deferred'])
    const { endpoint } = await sink.waitFor((l) => typeof l.endpoint === 'string', 60_000)
    args.push('--trace-enable', '--trace-level', String(opts.traceLevel), '--trace-sample-rate', '1', '--otlp-traces-endpoint', String(endpoint))
  }
  const env: Record<string, string> = {}
  if (opts.cpuProfDir) {
    env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${join(ROOT, 'bench/cpu-profile-hook.mjs')}`.trim()
    env.SPANSERVE_BENCH_CPU_PROF_DIR = opts.cpuProfDir
  }
  let server: { url: string; pid: number; childPids(): Record<string, number>; stop(): Promise<unknown> }
  try {
    const s = await startServer({ args, env, timeoutMs: 180_000, root: opts.root })
    track(s.proc)
    server = { url: s.url, pid: s.proc.pid!, childPids: s.childPids, stop: s.stop }
  } catch (err) {
    await sink?.stop()
    throw err
  }
  return {
    url: server.url,
    startProfiling: () => {
      for (const pid of [server.pid, ...Object.values(server.childPids())]) process.kill(pid, 'SIGUSR2')
    },
    pids: () => ({ server: server.pid, ...server.childPids(), ...(sink ? { sink: sink.proc.pid! } : {}) }),
    stop: async () => {
      await server.stop()
      if (!sink) return {}
      try {
        // The server flushes its exporters on shutdown, so the count is final once it has stopped.
        sink.send('count')
        const count = await sink.waitFor((l) => typeof l.spans === 'number', 60_000)
        return { spans: count.spans as number, exportRequests: count.requests as number }
      } finally {
        await sink.stop()
      }
    },
  }
}
