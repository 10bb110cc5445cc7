/**
 * Waiting for something a test's fakes record (a step sent, an output received) instead of sleeping
 * for a guess: `until(pred)` resolves once pred holds, checked now and at every `check()`, which the
 * fakes call whenever they record something.
 */
export function conditionWaiters(): { until: (pred: () => boolean) => Promise<void>; check: () => void } {
  const waiters: { pred: () => boolean; resolve: () => void }[] = []
  const check = () => {
    for (const w of [...waiters]) {
      if (!w.pred()) continue
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve()
    }
  }
  const until = (pred: () => boolean) => new Promise<void>((resolve) => (pred() ? resolve() : waiters.push({ pred, resolve })))
  return { until, check }
}
