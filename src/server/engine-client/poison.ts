/**
 * Poison requests: a request that was running when a process died of its own fault (hung, threw,
 * crashed; death-cause.ts) twice is failed instead of resumed a third time, so one request cannot
 * kill or hang processes for ever. A kill from outside never counts, so under chaos every request
 * still resumes. Every request lost with such a death counts it (a decode step runs the whole batch,
 * so which one was at fault cannot be told): a batch mate of a poison request that was lost with it
 * both times fails with it.
 */
import { SpanserveError } from '../../errors.ts'
import { isOwnDeath, type DeathCause } from './death-cause.ts'

/** Own-fault deaths a request may be lost with; at this many it is failed, not resumed. */
export const POISON_DEATHS = 2

/** Counts a death the request was lost with; true when it is now poison. */
export function countDeath(r: { ownDeaths: number }, cause: DeathCause | undefined): boolean {
  if (cause !== undefined && isOwnDeath(cause)) r.ownDeaths++
  return r.ownDeaths >= POISON_DEATHS
}

export function poisonError(processKey: string | null, cause: DeathCause | undefined): SpanserveError {
  return new SpanserveError(
    'SPANSERVE_ERR_POISON_REQUEST',
    `the request was running when a process died of its own fault ${POISON_DEATHS} times (the last: ${processKey ?? 'unknown'}, ${cause ?? 'unknown'}); it is not resumed again`,
  )
}
