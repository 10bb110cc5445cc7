/**
 * Starts and stops the OpenTelemetry SDK of one spanserve process: resource, sampler, bounded
 * batch export, exporter, and the global registrations @fastify/otel relies on.
 */
import { hostname } from 'node:os'
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator, type InstrumentationScope } from '@opentelemetry/core'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { HOST_NAME, PROCESS_PID, SERVICE_NAME, SPANSERVE_DP_RANK, SPANSERVE_PROCESS_ROLE, SPANSERVE_TP_RANK } from './attributes.ts'
import type { LineWriter } from './console-exporter.ts'
import { consoleWarnLogger, CountingExporter, CountingSpanProcessor, DropCounter, type WarnLogger } from './export-accounting.ts'
import type { ProcessIdentity, TracingOptions } from './options.ts'
import { TracingOffload } from './offload.ts'
import { resetHooks, runtime } from './runtime.ts'
import { SpanserveSampler } from './sampler.ts'
import { reportingSliceMarks } from './slice-marks.ts'
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
  contextManager: AsyncLocalStorageContextManager
  drops: DropCounter
}

let installed: Installed | undefined
let droppedBefore = 0

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

  const sampler = new SpanserveSampler(opts.sampleRate, opts.parentBased)
  const resource = defaultResource().merge(resourceFromAttributes(resourceAttributes(opts, who)))
  const provider = new BasicTracerProvider({
    resource,
    sampler,
    spanLimits: { attributeValueLengthLimit: opts.attributeValueLengthLimit },
    spanProcessors: [processor],
  })

  // Global registration: @fastify/otel (and any other instrumentation) finds our provider,
  // active-context propagation through async/await, and W3C headers on the HTTP edge.
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }))
  trace.setGlobalTracerProvider(provider)

  installed = { provider, contextManager, drops }
  const tracer = provider.getTracer(TRACER_NAME)
  runtime.tracer = tracer
  // The SDK's Tracer exposes its scope; finished slices share that object, so that exporters, which
  // group spans by scope identity, put them beside the tracer's own spans.
  const { instrumentationScope: scope } = tracer as typeof tracer & { readonly instrumentationScope: InstrumentationScope }
  runtime.slices = { processor, resource, scope, valueLengthLimit: opts.attributeValueLengthLimit }
  runtime.sampler = sampler
  runtime.level = opts.level
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
  await installed.provider.forceFlush().catch(() => undefined)
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
  for (const reset of resetHooks) reset()
  installed = undefined
  runtime.tracer = undefined
  runtime.sampler = undefined
  runtime.slices = undefined
  await inst.provider.shutdown().catch(() => undefined)
  droppedBefore += inst.drops.count
  trace.disable()
  propagation.disable()
  context.disable()
  inst.contextManager.disable()
}

/** Spans lost so far in this process: queue overflow plus failed exports. */
export function droppedSpans(): number {
  return droppedBefore + (installed?.drops.count ?? 0) + (runtime.offload?.dropped ?? 0)
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
