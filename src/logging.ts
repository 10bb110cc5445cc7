import { pino, type Logger } from 'pino'

export type { Logger }

/**
 * One pino logger per process: JSON lines (readable through pino-pretty when stdout is a terminal),
 * each carrying the process role and ranks so interleaved child output stays attributable.
 */
export function createLogger(level: string, bindings: Record<string, unknown>): Logger {
  const pretty = process.stdout.isTTY && process.env.SPANSERVE_LOG_FORMAT !== 'json'
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    // Keys that could carry secrets never reach a log line.
    redact: { paths: ['authorization', 'headers.authorization', 'req.headers.authorization', 'otlpTracesHeaders'], censor: '[redacted]' },
    transport: pretty ? { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'hostname' } } : undefined,
  })
}

/**
 * trace_id and span_id of a request's W3C traceparent, for its log lines, so a log line leads to
 * its trace. Empty when the request is not traced.
 */
export function traceLogFields(carrier: { traceparent: string } | null | undefined): { trace_id?: string; span_id?: string } {
  const parts = carrier?.traceparent.split('-')
  return parts && parts.length === 4 ? { trace_id: parts[1], span_id: parts[2] } : {}
}
