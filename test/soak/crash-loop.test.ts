/**
 * Only futile restarts make a crash loop. A worker SIGKILLed from outside every 2-4 s while it serves
 * is restarted at once each time and never opens its circuit, even with --crash-loop-deaths 2: every
 * request is answered in full. (A worker that dies before it is ready does open it:
 * test/soak/resume-bounds.test.ts.)
 */
import t from 'tap'
import { startServer } from '../../harness/server.ts'
import { runChaos } from '../../harness/chaos.ts'

t.test('a worker killed again and again after it served never opens its circuit', async (t) => {
  const server = await startServer({ args: ['--crash-loop-deaths', '2', '--crash-loop-window', '120'] })
  t.teardown(() => server.stop())
  const from = server.logs.length
  const r = await runChaos(server, { requests: 300, concurrency: 4, maxTokens: 8, killEveryMs: [2000, 4000], prompts: 3, hangMs: 60_000, seed: 7, minKills: 5, kinds: ['worker'] }, (line) =>
    t.comment(line),
  )
  t.ok(r.kills.length >= 5, `${r.kills.length} kills of worker-0-0`)
  const deaths = server.logs.slice(from).filter((l) => l.msg === 'process died; restarting it' && l.child === 'worker-0-0')
  t.equal(deaths.length, r.kills.length, 'each kill is a death')
  t.ok(
    deaths.every((d) => d.cause === 'external'),
    'each from outside',
  )
  t.ok(deaths.filter((d) => d.futile === true).length <= 1, 'at most one counted futile (two would open the circuit)')
  t.notOk(
    server.logs.slice(from).some((l) => typeof l.msg === 'string' && l.msg.startsWith('crash loop')),
    'no circuit opened, no restart backed off',
  )
  const o = r.outcomes
  t.equal(o.filter((x) => x.full).length, o.length, `all ${o.length} requests answered in full`)
})
