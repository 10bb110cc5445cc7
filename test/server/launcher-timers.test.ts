/**
 * The launcher's supervision policy on a fake clock, with scripted children (helpers/scripted-children.ts):
 * a dead child is restarted after 100 ms; only futile deaths (futile-restart.ts) count toward a crash
 * loop, whose circuit makes serving 'broken' and backs restarts off to 30 s until the child is ready
 * again; the hang watchdog, TP groups restarting whole, start-up failures, and stop. The same
 * policies against real processes: test/soak/ (supervision, resume-bounds, resume-trace, child-start, crash-loop).
 */
import t from 'tap'
import FakeTimers from '@sinonjs/fake-timers'
import { scriptedLauncher, type ScriptedChild } from '../helpers/scripted-children.ts'
import { LaunchError } from '../../src/server/supervisor/launcher.ts'

type InstalledClock = ReturnType<typeof FakeTimers.install>

/** Fake time starts here: a readyAt of 0 means "never ready" to the launcher. */
const T0 = 1_700_000_000_000

/** Timers and Date are faked; promises, nextTick and setImmediate stay real, so awaiting works. */
function fakeClock(t: { teardown(fn: () => void): void }): InstalledClock {
  const clock = FakeTimers.install({ now: T0, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  t.teardown(() => clock.uninstall())
  return clock
}

type Harness = ReturnType<typeof scriptedLauncher>

/** Runs the next timer (the restart of the child that just died): how long after its death it was started again. */
async function restartDelay(h: Harness, clock: InstalledClock, dead: ScriptedChild): Promise<number> {
  const diedAt = Date.now()
  await clock.nextAsync()
  const next = h.latest(dead.key)
  if (next === dead) throw new Error(`${dead.key} was not restarted by the next timer`)
  return next.bornAt - diedAt
}

t.test('a dead child is started again after 100 ms; its group is out of dispatch meanwhile', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0'])
  await h.startAll()
  t.equal(h.launcher.serving(), 'up')
  const first = h.latest('worker-0-0')
  first.report(1)
  await clock.tickAsync(5000)
  first.exit(1)
  t.same(h.died, [{ key: 'worker-0-0', pid: first.pid, cause: 'exception' }], 'the engine is told who died and why')
  t.equal(h.launcher.serving(), 'restarting', 'requests wait for the restart')
  t.ok(
    h.sent.some((s) => s.to === 'tokenizer' && s.msg.type === 'group_state' && s.msg.dpRank === 0 && !s.msg.up),
    'the tokenizer takes the group out of dispatch',
  )
  t.ok(
    h.sent.some((s) => s.to === 'scheduler-0' && s.msg.type === 'reset'),
    "the group's scheduler drops its requests",
  )
  await clock.tickAsync(99)
  t.equal(h.latest('worker-0-0'), first, 'not started again before 100 ms')
  await clock.tickAsync(1)
  const second = h.latest('worker-0-0')
  t.not(second, first, 'started again at 100 ms')
  t.equal(h.state('worker-0-0').restarts, 1)
  t.equal(h.launcher.serving(), 'restarting', 'not serving before it is ready')
  const sentBefore = h.sent.length
  second.ready()
  t.equal(h.launcher.serving(), 'up')
  t.ok(
    h.sent.slice(sentBefore).some((s) => s.to === 'tokenizer' && s.msg.type === 'group_state' && s.msg.dpRank === 0 && s.msg.up),
    'the group is back in dispatch once ready',
  )
})

t.test('a child killed after it served is restarted at once every time and never opens its circuit', async (t) => {
  const clock = fakeClock(t)
  // Two futile deaths in ten minutes would open it.
  const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '2', '--crash-loop-window', '600'])
  await h.startAll()
  // Lives that gave something for their restart (futile-restart.ts), each ended a different way.
  const lives: [string, (c: ScriptedChild) => Promise<void>][] = [
    ['served, then crashed', async (c) => (c.report(1), await clock.tickAsync(500), c.exit(1))],
    ['reported idle, then SIGKILLed from outside', async (c) => (c.report(0), await clock.tickAsync(1000), c.exit(null, 'SIGKILL'))],
    ['idle past the futile window, then crashed', async (c) => (await clock.tickAsync(3500), c.exit(1))],
    ['served, then SIGKILLed', async (c) => (c.report(1), await clock.tickAsync(1500), c.exit(null, 'SIGKILL'))],
  ]
  const delays: number[] = []
  let readies = 0
  for (let i = 0; i < 20; i++) {
    const child = h.latest('worker-0-0')
    if (i > 0) child.ready(), readies++
    await lives[i % lives.length]![1](child)
    delays.push(await restartDelay(h, clock, child))
    if (h.state('worker-0-0').circuitOpen || h.launcher.serving() === 'broken') break
  }
  t.same(delays, new Array(20).fill(100), 'each of 20 deaths restarted after 100 ms')
  t.notOk(h.state('worker-0-0').circuitOpen, 'the circuit stays closed')
  t.equal(h.launcher.serving(), 'restarting', 'requests wait for it, never refused')
  t.equal(h.changes(), readies, 'serving changed only as it became ready again, never for a circuit')
})

t.test('a child that keeps dying before it serves opens its circuit: serving is broken, restarts back off to 30 s', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '3', '--crash-loop-window', '60'])
  await h.startAll()
  const serving: string[] = []
  const delays: number[] = []
  // Ready at start, no work, and crashed at once; then never ready again.
  for (let i = 0; i < 11; i++) {
    const child = h.latest('worker-0-0')
    const changes = h.changes()
    child.exit(1)
    serving.push(h.launcher.serving())
    if (i === 2) t.equal(h.changes(), changes + 1, 'the engine hears that serving changed when the circuit opens')
    delays.push(await restartDelay(h, clock, child))
  }
  t.same(serving.slice(0, 3), ['restarting', 'restarting', 'broken'], 'the third futile death within the window breaks serving')
  t.ok(h.state('worker-0-0').circuitOpen)
  t.match(h.launcher.brokenReason(), /worker-0-0 died 3 times within 60 s/)
  t.same(delays, [100, 100, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000], 'at once until the circuit opens, then doubling up to 30 s')
})

t.test('a child ready but dead within 3 s without work counts toward the circuit; one that lived longer does not', async (t) => {
  t.test('dead 2.5 s after ready', async (t) => {
    const clock = fakeClock(t)
    const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '3'])
    await h.startAll()
    for (let i = 0; i < 3; i++) {
      const child = h.latest('worker-0-0')
      if (i > 0) child.ready()
      child.report(0)
      await clock.tickAsync(2500)
      child.exit(1)
      await restartDelay(h, clock, child)
    }
    t.ok(h.state('worker-0-0').circuitOpen, 'three futile deaths open it')
    t.equal(h.launcher.serving(), 'broken')
  })
  t.test('dead 3.5 s after ready', async (t) => {
    const clock = fakeClock(t)
    const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '3'])
    await h.startAll()
    for (let i = 0; i < 6; i++) {
      const child = h.latest('worker-0-0')
      if (i > 0) child.ready()
      child.report(0)
      await clock.tickAsync(3500)
      child.exit(1)
      t.equal(await restartDelay(h, clock, child), 100, `death ${i + 1}: restarted at once`)
    }
    t.notOk(h.state('worker-0-0').circuitOpen, 'six deaths, none futile')
  })
})

t.test('futile deaths further apart than the window never open the circuit', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '3', '--crash-loop-window', '10'])
  await h.startAll()
  h.latest('worker-0-0').exit(1)
  for (let i = 0; i < 10; i++) {
    // Each life: 6 s starting, never ready, then dead; at most two deaths fall within any 10 s.
    await clock.nextAsync()
    await clock.tickAsync(6000)
    h.latest('worker-0-0').exit(1)
    t.notOk(h.state('worker-0-0').circuitOpen, `death ${i + 2}: circuit closed`)
  }
  t.equal(h.launcher.serving(), 'restarting')
})

t.test('the circuit closes once the child is ready again, and its restarts are at once again', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0', '--crash-loop-deaths', '2'])
  await h.startAll()
  h.latest('tokenizer').exit(1)
  await clock.nextAsync()
  const looping = h.latest('tokenizer')
  looping.exit(1)
  t.equal(h.launcher.serving(), 'broken', 'the tokenizer in a crash loop breaks serving')
  t.match(h.launcher.brokenReason(), /tokenizer/)
  t.same(
    h.died.map((d) => d.key),
    ['tokenizer', 'tokenizer'],
  )
  t.equal(await restartDelay(h, clock, looping), 200, 'backed off while open')
  const changes = h.changes()
  const back = h.latest('tokenizer')
  back.ready()
  t.notOk(h.state('tokenizer').circuitOpen, 'closed on ready')
  t.equal(h.launcher.serving(), 'up')
  t.equal(h.changes(), changes + 1, 'the engine hears it')
  back.report(1)
  await clock.tickAsync(2000)
  back.exit(null, 'SIGKILL')
  t.equal(h.launcher.serving(), 'restarting', 'a death after recovery is waited for again, not refused')
  t.equal(await restartDelay(h, clock, back), 100, 'and restarted at once')
})

t.test('a crash loop in one data-parallel group leaves the others serving', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0', '--dp-size', '2', '--crash-loop-deaths', '2'])
  await h.startAll()
  h.latest('worker-1-0').exit(1)
  await clock.nextAsync()
  h.latest('worker-1-0').exit(1)
  t.ok(h.state('worker-1-0').circuitOpen)
  t.equal(h.launcher.serving(), 'up', 'group 0 still serves')
  const w0 = h.latest('worker-0-0')
  w0.report(1)
  await clock.tickAsync(1000)
  w0.exit(null, 'SIGKILL')
  t.equal(h.launcher.serving(), 'restarting', 'group 0 down but not looping: requests wait for it')
  await clock.tickAsync(100)
  h.latest('worker-0-0').ready()
  t.equal(h.launcher.serving(), 'up')
})

t.test('the hang watchdog kills a ready child that stops reporting, as a hung death', async (t) => {
  const clock = fakeClock(t)
  // Checked every 5 s; silent for 10 s is hung.
  const h = scriptedLauncher(['--hang-timeout', '10'])
  await h.startAll()
  const worker = h.latest('worker-0-0')
  for (let s = 1; s <= 14; s++) {
    await clock.tickAsync(1000)
    for (const c of [h.latest('tokenizer'), h.latest('scheduler-0')]) c.report(0)
    if (s <= 5) worker.report(0)
  }
  t.same(worker.signals, [], 'reported 9 s ago at the 14 s check: alive')
  await clock.tickAsync(1000)
  t.same(worker.signals, ['SIGKILL'], 'silent 10 s at the 15 s check: killed')
  t.same(h.died, [{ key: 'worker-0-0', pid: worker.pid, cause: 'hung' }], 'its death is a hang, not an outside kill')
  t.same([h.latest('tokenizer').signals, h.latest('scheduler-0').signals], [[], []], 'the children that report are left alone')
  t.equal(await restartDelay(h, clock, worker), 100, 'and it is started again')
})

t.test('a TP group restarts whole; only the rank that died is a death', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0', '--tp-size', '2', '--crash-loop-deaths', '1'])
  await h.startAll()
  const [r0, r1] = [h.latest('worker-0-0'), h.latest('worker-0-1')]
  r1.report(1)
  await clock.tickAsync(1000)
  r1.exit(1)
  t.same(r0.signals, ['SIGKILL'], 'its peer rank is killed')
  await clock.tickAsync(100)
  t.not(h.latest('worker-0-0'), r0, 'the peer is started again')
  t.not(h.latest('worker-0-1'), r1, 'the dead rank is started again')
  t.same(
    h.died.map((d) => d.key),
    ['worker-0-1'],
    'the engine hears of one death',
  )
  t.notOk(h.state('worker-0-0').circuitOpen, "the peer's kill does not count toward its circuit, even at one death")
})

t.test('start-up', async (t) => {
  t.test('a child that exits during start-up fails the launch and is not restarted', async (t) => {
    const clock = fakeClock(t)
    const h = scriptedLauncher(['--hang-timeout', '0'])
    const started = h.launcher.start(60_000)
    h.latest('tokenizer').ready()
    h.latest('scheduler-0').exit(1)
    await t.rejects(started, LaunchError)
    await t.rejects(started, /scheduler-0 exited during start-up/)
    const count = h.spawned.length
    await clock.tickAsync(10_000)
    t.equal(h.spawned.length, count, 'nothing started again')
  })
  t.test('children not ready in time fail the launch, naming them', async (t) => {
    const clock = fakeClock(t)
    const h = scriptedLauncher(['--hang-timeout', '0'])
    const started = h.launcher.start(30_000)
    h.latest('tokenizer').ready()
    h.latest('scheduler-0').ready()
    let settled = false
    started.catch(() => {}).finally(() => (settled = true))
    await clock.tickAsync(29_999)
    t.notOk(settled, 'still waiting just before the timeout')
    await clock.tickAsync(1)
    await t.rejects(started, /not ready after 30 s: worker-0-0/)
  })
})

t.test('stop: SIGTERM, SIGKILL after the grace, and nothing is restarted', async (t) => {
  const clock = fakeClock(t)
  const h = scriptedLauncher(['--hang-timeout', '0'])
  await h.startAll()
  const worker = h.latest('worker-0-0')
  worker.exit(1)
  // Its restart is pending (100 ms) when the stop begins.
  const scheduler = h.latest('scheduler-0')
  scheduler.ignores.add('SIGTERM')
  let stopped = false
  const stopping = h.launcher.stop(2000).then(() => (stopped = true))
  t.same(h.latest('tokenizer').signals, ['SIGTERM'])
  t.same(scheduler.signals, ['SIGTERM'])
  await clock.tickAsync(1999)
  t.notOk(stopped, 'waits for the child that ignores SIGTERM')
  t.ok(scheduler.alive)
  await clock.tickAsync(1)
  t.same(scheduler.signals, ['SIGTERM', 'SIGKILL'], 'then kills it')
  await stopping
  t.ok(stopped)
  await clock.tickAsync(60_000)
  t.equal(h.latest('worker-0-0'), worker, 'the pending restart did not start it')
  t.same(
    h.died.map((d) => d.key),
    ['worker-0-0'],
    'exits during the stop are not deaths',
  )
})
