/**
 * A live OTLP gRPC receiver in its own process, for the tracing-on runs: the spans are really sent,
 * encoded and decoded over the wire, but not by the processes being measured. Prints
 * {"endpoint":"127.0.0.1:PORT"} once listening; answers each "count" line on stdin with
 * {"spans":N,"requests":M}; exits when stdin closes or on SIGTERM.
 * Run: node --import tsx bench/otlp-sink.ts
 */
import { createInterface } from 'node:readline'
import { startOtlpReceiver } from '../test/helpers/otlp-receiver.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
let spans = 0
/** Counted spans are dropped at once: only the count is kept, so a long run holds no memory. */
const drain = (): void => {
  spans += receiver.spans.length
  receiver.spans.length = 0
}
const timer = setInterval(drain, 250)
const write = (obj: object): void => void process.stdout.write(`${JSON.stringify(obj)}\n`)

let closing = false
const close = async (): Promise<void> => {
  if (closing) return
  closing = true
  clearInterval(timer)
  drain()
  await receiver.close()
  process.exit(0)
}
process.on('SIGTERM', () => void close())
process.on('SIGINT', () => void close())

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (line.trim() !== 'count') return
  drain()
  write({ spans, requests: receiver.requests })
})
lines.on('close', () => void close())

write({ endpoint: receiver.endpoint.replace(/^http:\/\//, '') })
