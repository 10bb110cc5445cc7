/**
 * Whose fault a child's death was, from how it ended. A death of the child's own (the hang watchdog
 * killed it, it exited on an uncaught exception, it aborted or crashed natively) may have been caused
 * by a request it was running, so it counts against those requests (poison.ts). A kill from outside
 * (SIGKILL from an operator or the OOM killer, SIGTERM) or a clean exit is no request's fault.
 */
import { CHILD_EXIT } from '../../process/child.ts'

export type DeathCause = 'hung' | 'exception' | 'crash' | 'external'

/** The signals a process raises on itself: abort(), a bad memory access, a bad instruction, a math trap. */
const CRASH_SIGNALS: ReadonlySet<string> = new Set(['SIGSEGV', 'SIGABRT', 'SIGBUS', 'SIGILL', 'SIGFPE'])

/**
 * `hung`: the launcher's watchdog killed it (its SIGKILL is then the launcher's verdict, not an
 * outside kill); a node agent reports that as the signal 'hung'.
 */
export function deathCause(code: number | null, signal: string | null, hung = false): DeathCause {
  if (hung || signal === 'hung') return 'hung'
  if (signal !== null) return CRASH_SIGNALS.has(signal) ? 'crash' : 'external'
  // 0: drained on SIGTERM or left with its parent. A stalled peer is the peer's fault (child.ts).
  if (code === null || code === 0 || code === CHILD_EXIT.peerStalled) return 'external'
  return 'exception'
}

/** Whether a death of this cause counts against the requests the child was running. */
export function isOwnDeath(cause: DeathCause): boolean {
  return cause !== 'external'
}
