/**
 * Which deaths count toward a crash loop: only those whose restart was futile. A child that died
 * before it was ready, or within FUTILE_AFTER_READY_MS of ready without having done any work, gave
 * nothing for its restart; one that served (or lived past the window) did, so killing it again and
 * again, from outside, is bad luck, not a crash loop: it is restarted at once however often it dies.
 *
 * Work is what its periodic report shows (held requests, or scheduler steps run since the last
 * report, which count for the scheduler's workers too): no new message, and cheap. The window is short because a crash loop after ready is a crash
 * on the first work or on something at start (milliseconds to a second), while a healthy child under
 * outside kills lives seconds between them; it is longer than one default --stats-interval (1 s), so
 * a child that took work reports it before the window closes.
 */
import type { ProcessStats } from '../../ipc/messages.ts'
import type { DeathCause } from '../engine-client/death-cause.ts'

export const FUTILE_AFTER_READY_MS = 3000

/** The report shows the child at work: it holds requests, or (a scheduler) ran steps since its last report. */
export function reportShowsWork(s: Pick<ProcessStats, 'liveRequests' | 'scheduler'>): boolean {
  return s.liveRequests > 0 || (s.scheduler?.batchSizes.length ?? 0) > 0
}

/**
 * `readyAt`: when the dead child became ready, 0 if it never did; `worked`: a report after ready
 * showed work; `reported`: a report arrived after ready. A kill from outside (SIGKILL, SIGTERM) of a
 * child that was ready and reporting is not futile even without work seen: under kills every 2 s a
 * report showing work could lag the kill on a loaded machine, and a circuit opened on healthy children.
 */
export function futileRestart(life: { readyAt: number; worked: boolean; reported: boolean }, diedAt: number, cause: DeathCause): boolean {
  if (life.readyAt === 0) return true
  if (cause === 'external' && life.reported) return false
  return !life.worked && diedAt - life.readyAt < FUTILE_AFTER_READY_MS
}
