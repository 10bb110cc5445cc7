/**
 * µs per sliceStart+sliceEnd, and per request per batchSlice step, with tracing off and on
 * (on: real SDK, spans go to a console exporter that discards them, so export cost is excluded
 * from the hot path as in serving). Run: node --import tsx bench/tracing-slice.ts
 */
import * as tracing from '../src/tracing/index.ts'
import type { TracingOptions } from '../src/tracing/options.ts'

const N = 200_000
const opts: TracingOptions = {
  enabled: true,
  serviceName: 'bench',
  hostName: 'bench',
  exporter: 'console',
  otlpEndpoint: '',
  otlpProtocol: 'grpc',
  otlpHeaders: {},
  otlpInsecure: true,
  filePath: '',
  resourceAttributes: {},
  level: 3,
  sampleRate: 1,
  parentBased: true,
  recordContent: false,
  attributeValueLengthLimit: 4096,
  excludeUrls: [],
  maxQueueSize: 65_536,
  exportTimeoutMs: 1000,
}

/** Lets the batch processor run between chunks, as the event loop would while serving. */
const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r))

async function sliceLoop(rid: string, n: number): Promise<number> {
  let spent = 0
  for (let done = 0; done < n; done += 2048) {
    const t0 = performance.now()
    for (let i = 0; i < 2048; i++) {
      tracing.sliceStart(rid, 'decode')
      tracing.sliceEnd(rid, 'decode')
    }
    spent += performance.now() - t0
    await yieldToLoop()
  }
  return (spent * 1000) / (Math.ceil(n / 2048) * 2048)
}

async function batchLoop(B: number, steps: number): Promise<number> {
  const rids = Array.from({ length: B }, (_, i) => `b${B}-${i}`)
  for (const rid of rids) tracing.reqStart(rid, null, { root: true })
  const attrs = tracing.batchAttributes(B, 0)
  let spent = 0
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now()
    const now = tracing.nowNs()
    tracing.batchSlice(rids, 'decode_forward', now, now + 1000, attrs)
    spent += performance.now() - t0
    if (s % Math.ceil(2048 / B) === 0) await yieldToLoop()
  }
  const us = (spent * 1000) / (steps * B)
  for (const rid of rids) tracing.reqFinish(rid)
  return us
}

const rows: Array<[string, string]> = []
await sliceLoop('r', N) // warm-up
rows.push(['off: sliceStart+sliceEnd', (await sliceLoop('r', N)).toFixed(3)])

await tracing.initTracing(opts, { role: 'worker', tpRank: 0, dpRank: 0 }, { consoleWrite: () => {} })
tracing.reqStart('r', null, { root: true })
await sliceLoop('r', N / 4) // warm-up
rows.push(['on: sliceStart+sliceEnd (traced rid)', (await sliceLoop('r', N)).toFixed(3)])
rows.push(['on: sliceStart+sliceEnd (untraced rid)', (await sliceLoop('untraced', N)).toFixed(3)])
tracing.reqFinish('r')
for (const B of [1, 8, 64]) rows.push([`on: batchSlice per request, B=${B}`, (await batchLoop(B, Math.ceil(50_000 / B))).toFixed(3)])
tracing.setLevel(1)
rows.push(['on, level 1: batchSlice folded into decode_loop, B=64', (await batchLoop(64, 800)).toFixed(3)])
await tracing.shutdownTracing()

console.log('case'.padEnd(56), 'µs')
for (const [name, us] of rows) console.log(name.padEnd(56), us)
console.log(`dropped spans (queue ${opts.maxQueueSize}): ${tracing.droppedSpans()}`)
