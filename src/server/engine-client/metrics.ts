/**
 * /metrics: Prometheus text or OpenMetrics (by Accept), names familiar to vLLM users under a
 * `spanserve:` prefix. Request-level figures are observed here, where every request ends; gauges of
 * the other processes come from their periodic ProcessStats reports. With tracing on, latency
 * histograms carry the request's trace as an exemplar (OpenMetrics only, as Prometheus wants).
 */
import client from 'prom-client'
import type { ProcessStats } from '../../ipc/messages.ts'
import { droppedSpans, liveRequestCount } from '../../tracing/index.ts'
import { memoryStats, recorderStats } from '../../process/stats.ts'
import { CLIENT_LABELS, ClientLabels } from './client-labels.ts'

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512]

/** The same histogram in both registries: exemplars exist only in the OpenMetrics one. */
class LatencyHistogram {
  private readonly plain: client.Histogram
  private readonly withExemplars: client.Histogram

  constructor(prom: client.Registry, om: client.Registry<client.OpenMetricsContentType>, name: string, help: string, buckets = LATENCY_BUCKETS) {
    this.plain = new client.Histogram({ name, help, buckets, registers: [prom] })
    this.withExemplars = new client.Histogram({ name, help, buckets, enableExemplars: true, registers: [om] })
  }

  observe(seconds: number, trace: { traceId: string; spanId: string } | null): void {
    this.plain.observe(seconds)
    // Empty exemplar labels record no exemplar (untraced requests).
    this.withExemplars.observe({ value: seconds, labels: {}, exemplarLabels: trace ? { trace_id: trace.traceId, span_id: trace.spanId } : {} })
  }
}

export interface FinishedRequest {
  finishReason: string
  promptTokens: number
  completionTokens: number
  ttftSeconds: number | null
  e2eSeconds: number
  queueSeconds: number | null
  trace: { traceId: string; spanId: string } | null
  /** Who sent it (client-id.ts); per-client counters use a bounded label (client-labels.ts). */
  client?: string
}

const RANK_LABELS = ['role', 'dp_rank', 'tp_rank'] as const

export class ServerMetrics {
  readonly prom = new client.Registry()
  readonly om = new client.Registry<client.OpenMetricsContentType>()
  private readonly stats = new Map<string, ProcessStats>()

  private readonly success: client.Counter
  private readonly failure: client.Counter
  private readonly promptTokens: client.Counter
  private readonly generationTokens: client.Counter
  private readonly ttft: LatencyHistogram
  private readonly itl: LatencyHistogram
  private readonly e2e: LatencyHistogram
  private readonly queue: LatencyHistogram
  private readonly batchSize: client.Histogram
  private readonly prefixCacheQueries: client.Counter
  private readonly prefixCacheHits: client.Counter
  private readonly limitedSteps: client.Counter
  private readonly resumedTotal: client.Counter
  private readonly restartWait: client.Histogram
  private readonly clientLabels = new ClientLabels()
  private readonly clientRequests: client.Counter
  private readonly clientPromptTokens: client.Counter
  private readonly clientGenerationTokens: client.Counter
  private readonly poisonTotal: client.Counter

  /** `serverLive`: requests the server process itself has in flight. */
  constructor(serverLive: () => number) {
    this.om.setContentType(client.Registry.OPENMETRICS_CONTENT_TYPE)
    const registers = [this.prom, this.om]
    const stats = this.stats
    const serverStats = (): ProcessStats => ({
      type: 'process_stats',
      role: 'server',
      dpRank: 0,
      tpRank: 0,
      pid: process.pid,
      ...memoryStats(),
      liveRequests: serverLive(),
      tracedRequests: liveRequestCount(),
      droppedSpans: droppedSpans(),
      ...recorderStats(),
      scheduler: null,
      worker: null,
    })
    this.serverStats = serverStats
    this.success = new client.Counter({ name: 'spanserve:request_success_total', help: 'Requests that finished, by finish reason.', labelNames: ['finished_reason'], registers })
    this.failure = new client.Counter({ name: 'spanserve:request_failure_total', help: 'Requests that failed, by error code.', labelNames: ['code'], registers })
    this.promptTokens = new client.Counter({ name: 'spanserve:prompt_tokens_total', help: 'Prompt tokens of finished requests.', registers })
    this.generationTokens = new client.Counter({ name: 'spanserve:generation_tokens_total', help: 'Generated tokens of finished requests.', registers })
    this.ttft = new LatencyHistogram(this.prom, this.om, 'spanserve:time_to_first_token_seconds', 'Time from arrival to the first token.')
    this.itl = new LatencyHistogram(this.prom, this.om, 'spanserve:inter_token_latency_seconds', 'Time between consecutive tokens of a request.')
    this.e2e = new LatencyHistogram(this.prom, this.om, 'spanserve:e2e_request_latency_seconds', 'Time from arrival to the last token.')
    this.queue = new LatencyHistogram(this.prom, this.om, 'spanserve:request_queue_time_seconds', 'Time a request waited in the scheduler queue.')
    this.resumedTotal = new client.Counter({
      name: 'spanserve:requests_resumed_total',
      help: 'Requests lost with a dead process and resubmitted, by reason (the kind of process that died).',
      labelNames: ['reason'],
      registers,
    })
    this.restartWait = new client.Histogram({
      name: 'spanserve:restart_wait_seconds',
      help: 'Time a request waited for a restart (arriving while processes restarted, or resumed), by how the wait ended.',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.poisonTotal = new client.Counter({
      name: 'spanserve:poison_requests_total',
      help: 'Requests failed instead of resumed: lost twice with a process that hung or crashed of its own fault, by the cause of the last death.',
      labelNames: ['cause'],
      registers,
    })
    const byClient = `, by client (the first ${CLIENT_LABELS} clients seen by name, the rest as "other")`
    this.clientRequests = new client.Counter({ name: 'spanserve:client_requests_total', help: `Requests (sequences) that finished${byClient}.`, labelNames: ['client'], registers })
    this.clientPromptTokens = new client.Counter({ name: 'spanserve:client_prompt_tokens_total', help: `Prompt tokens of finished requests${byClient}.`, labelNames: ['client'], registers })
    this.clientGenerationTokens = new client.Counter({ name: 'spanserve:client_generation_tokens_total', help: `Generated tokens of finished requests${byClient}.`, labelNames: ['client'], registers })
    this.limitedSteps = new client.Counter({
      name: 'spanserve:light_client_steps_total',
      help: "Steps that ran at most --heavy-client-step-size of each client's sequences, a heavy client beside a light one.",
      labelNames: ['dp_rank'],
      registers,
    })
    this.batchSize = new client.Histogram({ name: 'spanserve:batch_size', help: 'Sequences decoded together in one step.', buckets: BATCH_BUCKETS, registers })
    const perGroup = (name: string, help: string, pick: (s: NonNullable<ProcessStats['scheduler']>) => number) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['dp_rank'],
        registers,
        collect() {
          this.reset()
          for (const s of stats.values()) if (s.scheduler) this.set({ dp_rank: String(s.dpRank) }, pick(s.scheduler))
        },
      })
    perGroup('spanserve:num_requests_running', 'Requests in the running batch.', (s) => s.running)
    perGroup('spanserve:num_requests_waiting', 'Requests in the waiting queue.', (s) => s.waiting)
    perGroup('spanserve:kv_cache_usage_perc', 'Fraction of the KV budget reserved by admitted requests.', (s) => (s.kvTotalTokens > 0 ? s.kvUsedTokens / s.kvTotalTokens : 0))
    // vLLM's prefix_cache_queries / prefix_cache_hits, in prompt tokens: hits / queries is the hit rate.
    this.prefixCacheQueries = new client.Counter({
      name: 'spanserve:prefix_cache_queries_total',
      help: 'Prompt tokens looked up in the prefix cache at admission.',
      labelNames: ['dp_rank'],
      registers,
    })
    this.prefixCacheHits = new client.Counter({
      name: 'spanserve:prefix_cache_hits_total',
      help: 'Prompt tokens found in the prefix cache at admission (not prefilled again).',
      labelNames: ['dp_rank'],
      registers,
    })
    perGroup('spanserve:prefix_cache_tokens', 'Tokens whose KV the prefix cache holds (within the KV budget; evicted when requests need the room).', (s) => s.cacheTokens ?? 0)
    const perProcess = (kind: 'gauge' | 'counter', name: string, help: string, pick: (s: ProcessStats) => number | null) => {
      const opts = {
        name,
        help,
        labelNames: RANK_LABELS,
        registers,
        collect(this: client.Gauge | client.Counter) {
          this.reset()
          for (const s of [...stats.values(), serverStats()]) {
            const v = pick(s)
            if (v !== null) this.inc({ role: s.role, dp_rank: String(s.dpRank), tp_rank: String(s.tpRank) }, v)
          }
        },
      }
      return kind === 'gauge' ? new client.Gauge(opts) : new client.Counter(opts)
    }
    perProcess('gauge', 'spanserve:kv_cache_tokens', "Tokens held in a worker rank's KV cache.", (s) => s.worker?.cachedTokens ?? null)
    perProcess('gauge', 'spanserve:process_resident_memory_bytes', 'Resident memory of each process.', (s) => s.rssBytes)
    perProcess('gauge', 'spanserve:process_live_requests', 'Requests each process holds state for.', (s) => s.liveRequests)
    perProcess('gauge', 'spanserve:trace_contexts_open', 'Open per-request trace contexts in each process.', (s) => s.tracedRequests)
    perProcess('counter', 'spanserve:span_export_dropped_total', 'Spans lost to a full export queue or a failed export.', (s) => s.droppedSpans)
    perProcess('gauge', 'spanserve:flight_recorder_spans', 'Spans the flight recorder holds in each process (--trace-flight-recorder).', (s) => s.flightRecorder?.spans ?? null)
    perProcess('gauge', 'spanserve:flight_recorder_bytes', "Approximate memory of the flight recorder's held spans in each process.", (s) => s.flightRecorder?.bytes ?? null)
    perProcess(
      'counter',
      'spanserve:flight_recorder_dropped_total',
      'Spans the flight recorder dropped for its cap (--trace-flight-recorder-spans), not those older than its window.',
      (s) => s.flightRecorder?.dropped ?? null,
    )
  }

  readonly serverStats: () => ProcessStats

  onProcessStats(s: ProcessStats): void {
    this.stats.set(`${s.role}-${s.dpRank}-${s.tpRank}`, s)
    for (const size of s.scheduler?.batchSizes ?? []) this.batchSize.observe(size)
    if (s.scheduler?.limitedSteps) this.limitedSteps.inc({ dp_rank: String(s.dpRank) }, s.scheduler.limitedSteps)
    if (s.scheduler?.cacheQueryTokens !== undefined) {
      const group = { dp_rank: String(s.dpRank) }
      this.prefixCacheQueries.inc(group, s.scheduler.cacheQueryTokens)
      this.prefixCacheHits.inc(group, s.scheduler.cacheHitTokens ?? 0)
    }
  }

  /** The latest report of every process, the server's own included (for /health). */
  processStats(): ProcessStats[] {
    return [this.serverStats(), ...this.stats.values()]
  }

  tokenGap(seconds: number, trace: FinishedRequest['trace']): void {
    this.itl.observe(seconds, trace)
  }

  finished(r: FinishedRequest): void {
    this.success.inc({ finished_reason: r.finishReason })
    this.promptTokens.inc(r.promptTokens)
    this.generationTokens.inc(r.completionTokens)
    const who = { client: this.clientLabels.label(r.client) }
    this.clientRequests.inc(who)
    this.clientPromptTokens.inc(who, r.promptTokens)
    this.clientGenerationTokens.inc(who, r.completionTokens)
    if (r.ttftSeconds !== null) this.ttft.observe(r.ttftSeconds, r.trace)
    this.e2e.observe(r.e2eSeconds, r.trace)
    if (r.queueSeconds !== null) this.queue.observe(r.queueSeconds, r.trace)
  }

  failed(code: string): void {
    this.failure.inc({ code })
  }

  resumed(reason: string): void {
    this.resumedTotal.inc({ reason })
  }

  waitedForRestart(seconds: number, outcome: string): void {
    this.restartWait.observe({ outcome }, seconds)
  }

  poisoned(cause: string): void {
    this.poisonTotal.inc({ cause })
  }

  /** Prometheus text unless the scraper asks for OpenMetrics. */
  async render(accept: string | undefined): Promise<{ contentType: string; body: string }> {
    const registry = accept?.includes('application/openmetrics-text') ? this.om : this.prom
    return { contentType: registry.contentType, body: await registry.metrics() }
  }
}
