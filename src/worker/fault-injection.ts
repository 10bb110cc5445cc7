/**
 * Test-only faults, off unless SPANSERVE_FAULT_INJECTION is set (tests of poison requests need a
 * request that kills or hangs its worker every time). Its value is a list of `action:seed`, e.g.
 * `throw:101,hang:102`: a step that starts a request sampling with that seed (its first prefill
 * chunk, sent again by every resumed attempt) makes the worker
 *   throw  - throw an uncaught exception (the process exits 1, as on any bug),
 *   abort  - abort() (SIGABRT, as a native crash),
 *   hang   - spin for ever (the hang watchdog kills it).
 * Unset, `faultFor` is a constant no-op.
 */
import type { ForwardBatch } from '../ipc/messages.ts'

export const FAULT_ENV = 'SPANSERVE_FAULT_INJECTION'

type Action = 'throw' | 'abort' | 'hang'

function parse(value: string | undefined): Map<number, Action> | null {
  if (!value) return null
  const faults = new Map<number, Action>()
  for (const item of value.split(',')) {
    const [action, seed] = item.trim().split(':')
    if ((action === 'throw' || action === 'abort' || action === 'hang') && seed !== undefined && Number.isInteger(Number(seed))) faults.set(Number(seed), action)
  }
  return faults.size > 0 ? faults : null
}

const FAULTS = parse(process.env[FAULT_ENV])

/** Runs the fault a step's request asks for, if injection is on: true when the step must not run. */
export function faultFor(batch: ForwardBatch): boolean {
  if (FAULTS === null) return false
  for (const entry of batch.prefill) {
    const seed = entry.sampling?.seed
    const action = seed === null || seed === undefined ? undefined : FAULTS.get(seed)
    if (action === 'abort') process.abort()
    if (action === 'hang') for (;;);
    if (action === 'throw') {
      // Thrown outside the inbox's handler (which would report a bad message and go on), and the step
      // is not run: as a step that throws, it never answers, and the process exits.
      setImmediate(() => {
        throw new Error(`fault injection: request ${entry.rid} throws`)
      })
      return true
    }
  }
  return false
}
