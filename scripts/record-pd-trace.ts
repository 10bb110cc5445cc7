/**
 * Records test/trace-tools/fixtures/pd/: one real prefill/decode run's trace files. A router, a
 * prefill instance and a decode instance (the embedded model), each with its own
 * `--trace-exporter file`, serve a completion and a streamed chat through the router; the three files
 * together hold both requests' traces whole (router span, bootstrap room, both instances' trees).
 *
 *   node --import tsx scripts/record-pd-trace.ts
 */
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRouter } from '../harness/router.ts'
import { ROOT, startServer } from '../harness/server.ts'

const dir = mkdtempSync(join(tmpdir(), 'spanserve-pd-trace-'))
const file = (name: string) => join(dir, `${name}.jsonl`)
const traced = (name: string) => ['--trace-enable', '--trace-exporter', 'file', '--trace-file', file(name), '--trace-level', '2']
const [prefill, decode] = await Promise.all([
  startServer({ args: [...traced('prefill'), '--disaggregation-mode', 'prefill'] }),
  startServer({ args: [...traced('decode'), '--disaggregation-mode', 'decode', '--disaggregation-bootstrap-port', '0'] }),
])
const router = await startRouter(['--prefill', prefill!.url, '--decode', decode!.url, '--health-check-interval', '0.2', ...traced('router')])
const url = router.url
for (;;) {
  if ((await fetch(url + '/health')).status === 200) break
  await new Promise((r) => setTimeout(r, 100))
}
const post = (path: string, body: object) => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.text())
const story = 'The history of the city goes back to the days when the river was the only road, and the people who lived along it built their houses out of the stones they found on its banks.'
await post('/v1/completions', { model: 'default', prompt: `${story} Over the years`, max_tokens: 8, temperature: 0 })
await post('/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: `${story} Tell me about the bridges.` }], max_tokens: 8, temperature: 0, stream: true })
router.proc.kill('SIGTERM')
await router.exited
await Promise.all([prefill!.stop(), decode!.stop()])
const out = join(ROOT, 'test/trace-tools/fixtures/pd')
mkdirSync(out, { recursive: true })
for (const name of ['router', 'prefill', 'decode']) copyFileSync(file(name), join(out, `${name}.jsonl`))
console.log(`wrote ${out}`)
