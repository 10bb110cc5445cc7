/**
 * `npm run chaos`: a longer chaos run than the test's (test/soak/chaos.test.ts), with --dp-size 1
 * and 2: requests at concurrency 16 while a random tokenizer, scheduler or worker is SIGKILLed every
 * few seconds. Prints availability (answered in full without a retry), the latency each kind of kill
 * added to the requests it touched (p50/p99 over the fault-free median) and resumed requests by the
 * kind of process that died. Options: --requests N (default 3000), --max-tokens N (16), --dp 1,2,
 * --kill-every MS[,MS] (each a run with one kill every MS; default: a random 2-5 s apart).
 */
import { parseArgs } from 'node:util'
import { startServer } from '../harness/server.ts'
import { killLatencies, runChaos } from '../harness/chaos.ts'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    'max-tokens': { type: 'string', default: '16' },
    dp: { type: 'string', default: '1,2' },
    'kill-every': { type: 'string' },
  },
})

const intervals: [number, number][] = values['kill-every'] ? values['kill-every'].split(',').map((ms) => [Number(ms), Number(ms)]) : [[2000, 5000]]
for (const dp of values.dp.split(',').map(Number))
  for (const killEveryMs of intervals) {
    const server = await startServer({ args: ['--dp-size', String(dp)] })
    try {
      const started = Date.now()
      const r = await runChaos(server, {
        requests: Number(values.requests),
        concurrency: 16,
        maxTokens: Number(values['max-tokens']),
        killEveryMs,
        prompts: 16,
        hangMs: 120_000,
        seed: 7 + dp,
        minKills: 9,
      })
      const o = r.outcomes
      const full = o.filter((x) => x.full).length
      const pct = (n: number) => `${((100 * n) / o.length).toFixed(2)}%`
      console.log(`\n--dp-size ${dp}, a kill every ${killEveryMs.join('-')} ms: ${o.length} requests, ${r.kills.length} kills in ${Math.round((Date.now() - started) / 1000)} s`)
      console.log(`  availability (answered in full, no retry): ${full}/${o.length} = ${pct(full)}`)
      console.log(`  hung ${o.filter((x) => x.hung).length}, cut streams ${o.filter((x) => x.cut).length}, greedy/seeded answers unlike the fault-free run ${o.filter((x) => x.mismatch).length}`)
      console.log(`  fault-free median latency ${Math.round(r.baselineP50Ms)} ms; resident memory ${Math.round(r.rssBefore / 2 ** 20)} -> ${Math.round(r.rssAfter / 2 ** 20)} MiB`)
      console.log('  kill        kills  requests touched  added p50   added p99   restart p50')
      for (const k of killLatencies(r)) {
        console.log(
          `  ${k.kind.padEnd(10)}  ${String(k.kills).padStart(5)}  ${String(k.affected).padStart(16)}  ${String(Math.round(k.p50AddedMs)).padStart(6)} ms  ${String(Math.round(k.p99AddedMs)).padStart(6)} ms  ${String(Math.round(k.restartP50Ms)).padStart(8)} ms`,
        )
      }
      console.log(`  resumed by reason: ${JSON.stringify(r.resumedByReason)}`)
    } finally {
      await server.stop()
    }
  }
