/**
 * Starts and stops the OpenTelemetry SDK of one spanserve process: resource, sampler, bounded
 * batch export, exporter, and the global registrations @fastify/otel relies on.
 */
import { PresetIdGenerator } from './preset-ids.ts'
import { hostname } from 'node:os'
import { context, propagation, trace, type ContextManager } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator, type InstrumentationScope } from '@opentelemetry/core'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { HOST_NAME, PROCESS_PID, SERVICE_NAME, SPANSERVE_DP_RANK, SPANSERVE_PROCESS_ROLE, SPANSERVE_TP_RANK } from './attributes.ts'
import type { LineWriter } from './console-exporter.ts'
import { consoleWarnLogger, CountingExporter, CountingSpanProcessor, DropCounter } from './export-accounting.ts'
import type { WarnLogger } from './types.ts'
import type { ProcessIdentity, TracingOptions } from './options.ts'
import { TracingOffload } from './offload.ts'
import { resetHooks, runtime } from './runtime.ts'
import { SpanserveSampler } from './sampler.ts'
import { FlightRecorder, type Flushed, type RecorderStats } from './flight-recorder.ts'
import { TailBuffer } from './tail-buffer.ts'
import { TailDecider } from './tail-decider.ts'
import { reportingSliceMarks, spanSecured } from './slice-marks.ts'
import { SyncContextManager } from './sync-context.ts'
import { heldJournalKey, journalKey, SPAN_JOURNAL_ENV, SpanJournal } from './span-journal.ts'
import { defaultThreadLabel, setThreadInfo } from './trace.ts'

const TRACER_NAME = 'spanserve'

export interface TracingHooks {
  /** Where the single "spans are being dropped" warning goes; default console.warn. */
  log?: WarnLogger
  /** Where the console exporter writes its lines; default stdout. */
  consoleWrite?: LineWriter
  /** Run the SDK in a worker thread (offload.ts); the API then records calls for it. */
  offload?: boolean
}

interface Installed {
  provider: BasicTracerProvider
  contextManager: ContextManager | undefined
  drops: DropCounter
  exporter: CountingExporter
  journal: SpanJournal | undefined
  tail: TailBuffer | undefined
  recorder: FlightRecorder | undefined
  /** Exports of other processes' orphan spans still under way (exportOrphanSpans). */
  recovering: Set<Promise<void>>
}

/** Spans per export of recovered spans: the batch processor's own batch size. */
const RECOVERED_BATCH = 512

let installed: Installed | undefined
let droppedBefore = 0
let recorderDroppedBefore = 0

export async function initTracing(opts: TracingOptions, who: ProcessIdentity, hooks: TracingHooks = {}): Promise<void> {
  if (!opts.enabled) return
  if (installed !== undefined || runtime.offload !== undefined) await shutdownTracing()
  if (hooks.offload) {
    const log = hooks.log ?? consoleWarnLogger
    const offload = await TracingOffload.start(opts, who, log, (err) => {
      if (runtime.offload !== offload) return
      log.warn({ err: err.message }, 'tracing: the tracing thread failed; this process records no more spans')
      runtime.enabled = false
      runtime.offload = undefined
    })
    runtime.offload = offload
    if (reportingSliceMarks()) offload.reportMarks(true)
    runtime.level = opts.level
    runtime.exportLevel = opts.level
    runtime.identity = { ...who }
    runtime.enabled = true
    return
  }

  // The exporters (gRPC, protobuf) are loaded only when tracing is on: every process starts faster without them.
  const { createSpanExporter, describeDestination } = await import('./exporters.ts')
  const drops = new DropCounter(hooks.log ?? consoleWarnLogger, describeDestination(opts))
  const exporter = new CountingExporter(createSpanExporter(opts, hooks.consoleWrite), drops)
  const maxQueueSize = Math.max(1, Math.floor(opts.maxQueueSize))
  const processor = new CountingSpanProcessor(
    new BatchSpanProcessor(exporter, {
      maxQueueSize,
      maxExportBatchSize: Math.min(512, maxQueueSize),
      exportTimeoutMillis: opts.exportTimeoutMs,
    }),
    maxQueueSize,
    drops,
  )
  exporter.processor = processor

  // Tail sampling: spans wait for their trace's verdict before the queue; the server gives the verdicts.
  // The router in front of instances has no verdicts to wait for.
  const keep = opts.keep && who.role !== 'router' ? opts.keep : undefined
  const decider = keep && who.role === 'server' ? new TailDecider(keep) : undefined
  const tail = keep ? new TailBuffer(processor, keep, hooks.log ?? consoleWarnLogger, decider) : undefined
  // The flight recorder holds the detail above --trace-level, in front of everything; what it
  // flushes goes straight to the queue (a dump also covers traces whose verdict was to drop).
  const recorder = opts.flightRecorder && who.role !== 'router' ? new FlightRecorder(tail ?? processor, processor, opts.flightRecorder) : undefined
  if (recorder && tail) tail.onKeep = (ids) => recorder.flush(ids)
  const entry = recorder ?? tail ?? processor
  if (decider) decider.local = tail

  const sampler = new SpanserveSampler(opts.sampleRate, opts.parentBased, decider)
  const resource = defaultResource().merge(resourceFromAttributes(resourceAttributes(opts, who)))
  const provider = new BasicTracerProvider({
    resource,
    sampler,
    spanLimits: { attributeValueLengthLimit: opts.attributeValueLengthLimit },
    idGenerator: new PresetIdGenerator(),
    spanProcessors: [entry],
  })

  // Global registration: @fastify/otel (and any other instrumentation) finds our provider,
  // active-context propagation through async/await, and W3C headers on the HTTP edge.
  // An AsyncLocalStorage only where the active context is read after an await (the router's proxy):
  // on Node 20 it turns on async hooks for every promise of the process. The server's instrumentation
  // reads it only synchronously (sync-context.ts); the children pass every context explicitly.
  const contextManager = who.role === 'router' ? new AsyncLocalStorageContextManager().enable() : who.role === 'server' ? new SyncContextManager() : undefined
  if (contextManager !== undefined) context.setGlobalContextManager(contextManager)
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }))
  trace.setGlobalTracerProvider(provider)

  // A child of the server journals what it queues, so that its spans outlive a SIGKILL (span-journal.ts).
  // In the worker this runs in the tracing thread, which dies with the process too.
  const journalDir = process.env[SPAN_JOURNAL_ENV]
  const key = journalKey(who)
  const journal = journalDir && key !== undefined ? SpanJournal.open(journalDir, key, resource.attributes, hooks.log ?? consoleWarnLogger) : undefined
  processor.journal = journal
  // What tail sampling holds is journaled apart: it has not entered the queue (span-journal.ts).
  if (tail && journal && keep) {
    tail.journal = SpanJournal.open(journalDir!, heldJournalKey(key!), resource.attributes, hooks.log ?? consoleWarnLogger, { expireMs: keep.verdictTimeoutMs })
    tail.onSecured = spanSecured
  }

  installed = { provider, contextManager, drops, exporter, journal, tail, recorder, recovering: new Set() }
  const tracer = provider.getTracer(TRACER_NAME)
  runtime.tracer = tracer
  // The SDK's Tracer exposes its scope; finished slices share that object, so that exporters, which
  // group spans by scope identity, put them beside the tracer's own spans.
  const { instrumentationScope: scope } = tracer as typeof tracer & { readonly instrumentationScope: InstrumentationScope }
  runtime.slices = { processor: entry, resource, scope, valueLengthLimit: opts.attributeValueLengthLimit }
  runtime.sampler = sampler
  runtime.tail = tail
  runtime.decider = decider
  runtime.recorder = recorder
  runtime.level = recorder ? 3 : opts.level
  runtime.exportLevel = opts.level
  runtime.recordContent = opts.recordContent
  runtime.valueLengthLimit = opts.attributeValueLengthLimit
  runtime.identity = { ...who }
  runtime.hostName = opts.hostName || hostname()
  setThreadInfo(defaultThreadLabel(who.role), who.tpRank, who.dpRank)
  runtime.enabled = true
}

/** Exports what is queued now (waits at most the export timeout per batch). */
export async function flushTracing(): Promise<void> {
  if (runtime.offload) return runtime.offload.flush()
  if (installed === undefined) return
  runtime.decider?.flush()
  await installed.provider.forceFlush().catch(() => undefined)
  await Promise.all(installed.recovering)
}

/**
 * Exports spans that another process recorded and never exported, with their own resource
 * (orphan-spans.ts): straight to this process's exporter, beside its batches. A promise is taken so
 * that the caller can hand the work over before reading them: shutdown waits for it.
 */
export function exportOrphanSpans(spans: ReadableSpan[] | Promise<ReadableSpan[]>): Promise<void> {
  const inst = installed
  if (inst === undefined) return Promise.resolve()
  const sent = Promise.resolve(spans).then(async (all) => {
    for (let i = 0; i < all.length; i += RECOVERED_BATCH) await inst.exporter.exportRecovered(all.slice(i, i + RECOVERED_BATCH))
  })
  const tracked = sent.catch(() => undefined).finally(() => inst.recovering.delete(tracked))
  inst.recovering.add(tracked)
  return tracked
}

/**
 * Spans that another process held for tail sampling's verdicts and never exported (orphan-spans.ts):
 * they join this process's hold, where the server's verdicts decide them; returns how many were
 * taken (none without a hold).
 */
export function adoptHeldSpans(spans: readonly ReadableSpan[]): number {
  const tail = installed?.tail
  if (tail === undefined) return 0
  for (const s of spans) tail.adopt(s)
  return spans.length
}

/** Flushes, stops the SDK and unregisters the globals; the API becomes a no-op again. */
export async function shutdownTracing(): Promise<void> {
  const offload = runtime.offload
  if (offload !== undefined) {
    runtime.enabled = false
    runtime.offload = undefined
    await offload.shutdown()
    droppedBefore += offload.dropped
    return
  }
  const inst = installed
  if (inst === undefined) return
  runtime.enabled = false
  runtime.decider?.flush()
  for (const reset of resetHooks) reset()
  installed = undefined
  runtime.tracer = undefined
  runtime.sampler = undefined
  runtime.slices = undefined
  runtime.tail = undefined
  runtime.decider = undefined
  runtime.recorder = undefined
  await Promise.all(inst.recovering)
  await inst.provider.shutdown().catch(() => undefined)
  // Exported (or given up on) by this process itself: nothing for the server to recover.
  inst.journal?.close()
  droppedBefore += inst.drops.count + (inst.tail?.dropped ?? 0)
  recorderDroppedBefore += inst.recorder?.dropped ?? 0
  trace.disable()
  propagation.disable()
  context.disable()
  inst.contextManager?.disable()
}

/** Spans lost so far in this process: queue overflow plus failed exports. */
export function droppedSpans(): number {
  return droppedBefore + (installed?.drops.count ?? 0) + (installed?.tail?.dropped ?? 0) + (runtime.offload?.dropped ?? 0)
}

/** The flight recorder's size in this process (its tracing thread's, in the worker); null without one. */
export function flightRecorderStats(): RecorderStats | null {
  if (runtime.offload !== undefined) return runtime.offload.recorder
  const r = installed?.recorder
  if (r === undefined) return null
  const s = r.stats()
  return { ...s, dropped: s.dropped + recorderDroppedBefore }
}

/** Sends this process's recorded window to the export queue (POST /v1/trace/dump; a child on trace_dump). */
export async function dumpFlightRecorder(): Promise<Flushed> {
  if (runtime.offload !== undefined) return runtime.offload.dump()
  const inst = installed
  if (inst?.recorder === undefined) return { traces: 0, spans: 0 }
  const sent = inst.recorder.flush()
  // Answered once exported (or the export timeout passed): the dump is for now, not the next batch.
  await inst.provider.forceFlush().catch(() => undefined)
  return sent
}

export function isTracingEnabled(): boolean {
  return runtime.enabled
}

function resourceAttributes(opts: TracingOptions, who: ProcessIdentity): Record<string, string | number> {
  const attrs: Record<string, string | number> = {
    ...opts.resourceAttributes,
    // OTEL_RESOURCE_ATTRIBUTES=service.name=… counts unless a service name was set explicitly.
    [SERVICE_NAME]: opts.serviceName && (opts.serviceName !== 'spanserve' || !opts.resourceAttributes[SERVICE_NAME]) ? opts.serviceName : (opts.resourceAttributes[SERVICE_NAME] ?? 'spanserve'),
    [HOST_NAME]: opts.hostName || hostname(),
    [PROCESS_PID]: process.pid,
    [SPANSERVE_PROCESS_ROLE]: who.role,
  }
  if (who.tpRank !== undefined) attrs[SPANSERVE_TP_RANK] = who.tpRank
  if (who.dpRank !== undefined) attrs[SPANSERVE_DP_RANK] = who.dpRank
  return attrs
}
