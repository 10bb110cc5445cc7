/**
 * Timestamps in the tracing API are epoch nanoseconds as plain numbers (resolution ~256 ns at
 * today's epoch, ample for spans) so callers can subtract them; the SDK wants HrTime.
 */
import type { HrTime } from '@opentelemetry/api'

const origin = performance.timeOrigin

/** Now, in epoch nanoseconds, on the same clock the SDK uses for its own span times. */
export function nowNs(): number {
  return (origin + performance.now()) * 1e6
}

export function nsToHrTime(ns: number): HrTime {
  const s = Math.floor(ns / 1e9)
  const rem = Math.round(ns - s * 1e9)
  if (rem >= 1e9) return [s + 1, rem - 1e9]
  if (rem < 0) return [s - 1, rem + 1e9]
  return [s, rem]
}

/**
 * undefined means now. Taken here rather than left to the SDK, whose default start times are whole
 * milliseconds: back-to-back slices would then appear to overlap.
 */
export function optionalHrTime(ns: number | undefined): HrTime {
  return nsToHrTime(ns ?? nowNs())
}
