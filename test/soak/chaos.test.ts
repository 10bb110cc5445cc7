/**
 * A crash costs latency, not answers. 500 requests at concurrency 16, streamed and not, greedy,
 * seeded and unseeded, while a random tokenizer, scheduler or worker is SIGKILLed every few seconds
 * (every kind at least once), with one data-parallel group and with two. Without any client retry:
 * at least 99% are answered in full, none hangs, no stream is cut, every greedy and seeded answer is
 * the fault-free pass's, the server lets go of every request, and memory is back within 10%.
 * Loopback only; the server, and through it every child, is ended by the test.
 */
import t from 'tap'
import { startServer } from '../../harness/server.ts'
import { runChaos, killLatencies } from '../../harness/chaos.ts'

const REQUESTS = 500

for (const dp of [1, 2]) {
  t.test(`chaos with --dp-size ${dp}`, async (t) => {
    // Kills every few seconds would be a crash loop by the default bound: this run is not one.
    const server = await startServer({ args: ['--dp-size', String(dp), '--stats-interval', '0.25'] })
    t.teardown(() => server.stop())
    const r = await runChaos(server, { requests: REQUESTS, concurrency: 16, maxTokens: 8, killEveryMs: [1500, 3000], prompts: 12, hangMs: 90_000, seed: 20 + dp, minKills: 3 }, (line) =>
      t.comment(line),
    )
    const o = r.outcomes
    const kinds = new Set(r.kills.map((k) => k.kind))
    t.same([...kinds].sort(), ['scheduler', 'tokenizer', 'worker'], 'a tokenizer, a scheduler and a worker were each killed at least once')
    t.ok(r.kills.length >= 3, `${r.kills.length} kills`)
    const full = o.filter((x) => x.full).length
    t.ok(full >= 0.99 * o.length, `${full} of ${o.length} answered in full without a retry`)
    t.equal(o.filter((x) => x.hung).length, 0, 'no request hung')
    t.equal(o.filter((x) => x.cut).length, 0, 'no stream was cut')
    t.equal(o.filter((x) => x.mismatch && x.kind === 'greedy').length, 0, "every greedy answer is the fault-free pass's")
    t.equal(o.filter((x) => x.mismatch && x.kind === 'seeded').length, 0, "every seeded answer is the fault-free pass's")
    t.equal(r.settledMismatches, 0, 'after the chaos, the restarted processes answer as before')
    t.ok(Object.values(r.resumedByReason).reduce((a, b) => a + b, 0) > 0, `requests were resumed: ${JSON.stringify(r.resumedByReason)}`)
    t.equal(r.liveAfter, 0, 'the server holds no request afterwards')
    t.ok(r.rssAfter <= r.rssBefore * 1.1, `resident memory ${Math.round(r.rssBefore / 2 ** 20)} -> ${Math.round(r.rssAfter / 2 ** 20)} MiB`)
    for (const k of killLatencies(r))
      t.comment(
        `${k.kind}: ${k.kills} kills, ${k.affected} requests touched, added p50 ${Math.round(k.p50AddedMs)} ms, p99 ${Math.round(k.p99AddedMs)} ms, restart p50 ${Math.round(k.restartP50Ms)} ms`,
      )
    const failures = o.filter((x) => !x.full)
    if (failures.length > 0) t.comment(`not in full: ${JSON.stringify(failures.slice(0, 5))}`)
  })
}
