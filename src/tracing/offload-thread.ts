/**
 * The worker thread behind TracingOffload (offload.ts): runs the tracing module with the process's
 * options and identity, and replays the calls the main thread recorded, in order.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { FromThread, OffloadCall, OffloadStart, ToThread } from './offload.ts'
import { droppedSpans, dumpFlightRecorder, flightRecorderStats, flushTracing, initTracing, shutdownTracing } from './setup.ts'
import { reportSliceMarks } from './slice-marks.ts'
import { applyTraceVerdicts } from './tail.ts'
import { liveRequestCount } from './thread-tracer.ts'
import * as api from './trace.ts'

const port = parentPort!
const post = (m: FromThread): void => port.postMessage(m)
const { opts, who } = workerData as OffloadStart

function replay(c: OffloadCall): void {
  // Each call was recorded with its function's own arguments (OffloadCall pairs them); TypeScript
  // cannot follow that pairing through the union, hence the cast.
  const [name, ...args] = c
  const fn = api[name] as (...a: unknown[]) => void
  fn(...args)
}

await initTracing(opts, who, { log: { warn: (obj, msg) => post({ type: 'warn', obj, msg }) } })

port.on('message', (m: ToThread) => {
  if (m.type === 'setting') {
    if (m.change.level !== undefined) api.setLevel(m.change.level)
    if (m.change.sampleRate !== undefined) api.setSampleRate(m.change.sampleRate)
    return
  }
  if (m.type === 'verdict') {
    applyTraceVerdicts(m.keep, m.drop)
    return
  }
  if (m.type === 'dump') {
    void dumpFlightRecorder().then((sent) => post({ type: 'done', id: m.id, sent }))
    return
  }
  if (m.type === 'marks') {
    reportSliceMarks(m.on ? (rids, slices) => post({ type: 'marks', rids, slices }) : undefined)
    return
  }
  if (m.type === 'calls') {
    for (const c of m.calls) {
      try {
        replay(c)
      } catch (err) {
        // One bad call must not take the others down; the API itself never throws on purpose.
        post({ type: 'warn', obj: { err: String(err), call: c[0] }, msg: 'tracing: a call failed in the tracing thread' })
      }
    }
    post({ type: 'report', dropped: droppedSpans(), live: liveRequestCount(), batches: 1, recorder: flightRecorderStats() })
    return
  }
  void (m.type === 'flush' ? flushTracing() : shutdownTracing()).then(() => {
    post({ type: 'report', dropped: droppedSpans(), live: liveRequestCount(), batches: 0, recorder: flightRecorderStats() })
    post({ type: 'done', id: m.id })
  })
})
post({ type: 'ready' })
