/**
 * The periodic report every child sends to the server for /metrics: common gauges (memory, live
 * requests, open trace contexts, dropped spans) plus what the process's own role adds.
 */
import type { Outbox } from '../ipc/channel.ts'
import type { ProcessStats, Role } from '../ipc/messages.ts'
import { droppedSpans, flightRecorderStats, liveRequestCount } from '../tracing/index.ts'
import { idleCollector } from './idle-collect.ts'

export type RoleStats = Pick<ProcessStats, 'liveRequests' | 'scheduler' | 'worker'>

export function startStatsReporter(toServer: Outbox, who: { role: Role; dpRank: number; tpRank: number }, intervalMs: number, collect: () => RoleStats): () => void {
  const collectWhenIdle = idleCollector()
  const report = () => {
    const own = collect()
    toServer.post({
      type: 'process_stats',
      ...who,
      pid: process.pid,
      ...memoryStats(),
      tracedRequests: liveRequestCount(),
      droppedSpans: droppedSpans(),
      ...recorderStats(),
      ...own,
    })
    collectWhenIdle(own.liveRequests)
  }
  const timer = setInterval(report, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** The flight recorder's size, where one runs (--trace-flight-recorder). */
export function recorderStats(): Pick<ProcessStats, 'flightRecorder'> {
  const r = flightRecorderStats()
  return r === null ? {} : { flightRecorder: r }
}

/** Resident memory, and how much of it the JavaScript heap and external buffers account for. */
export function memoryStats(): Pick<ProcessStats, 'rssBytes' | 'heapUsedBytes' | 'externalBytes'> {
  const m = process.memoryUsage()
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external }
}
