/**
 * The bounds on waiting for a restart. A worker that cannot start again (its model file gone) is a
 * crash loop: once it has died --crash-loop-deaths times, the request waiting for it and every new
 * one get 503 with Retry-After at once (not after --restart-wait), /health is red and names the open
 * circuit, and once the file is back the worker starts and requests are served again. A request
 * whose --request-timeout passes while it waits is ended with its 504, not resumed.
 */
import t, { type Test } from 'tap'
import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureModel } from '../../src/model/build.ts'
import { TEST_CACHE_DIR, startServer, type RunningServer } from '../../harness/server.ts'
import { health, waitHealthy } from '../../harness/chaos.ts'

const source = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const FILES = ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'model.onnx']

/** A private copy of the model, whose model.onnx the test can take away and put back. */
function modelCopy(t: Test): { dir: string; hide: () => void; restore: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-bounds-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of FILES) copyFileSync(join(source, f), join(dir, f))
  const onnx = join(dir, 'model.onnx')
  return { dir, hide: () => renameSync(onnx, onnx + '.away'), restore: () => renameSync(onnx + '.away', onnx) }
}

function complete(server: RunningServer, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, ...extra }),
  })
}

t.test('a worker that cannot start again opens its circuit: 503 at once, red /health', async (t) => {
  const model = modelCopy(t)
  const server = await startServer({ args: ['--model', model.dir, '--crash-loop-deaths', '2', '--crash-loop-window', '300', '--restart-wait', '600'] })
  t.teardown(() => server.stop())
  model.hide()
  const pid = server.childPids()['worker-0-0']!
  process.kill(pid, 'SIGKILL')
  // Arrives while the worker restarts: it waits, until the circuit opens.
  const waiting = await complete(server)
  t.equal(waiting.status, 503, 'the waiting request gets 503 when the circuit opens (--restart-wait is 600 s)')
  t.equal(waiting.headers.get('retry-after'), '1', 'with Retry-After')
  const body = (await waiting.json()) as { error: { code: string; message: string } }
  t.equal(body.error.code, 'SPANSERVE_ERR_UNAVAILABLE', 'unavailable')
  t.match(body.error.message, /crash loop: worker-0-0 died 2 times within 300 s/, 'the answer says why')
  const open = await server.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('crash loop: worker-0-0 died'))
  t.equal(open.level, 50, 'the log says why, as an error')
  const next = await complete(server)
  t.equal(next.status, 503, 'a new request is not kept waiting either')
  const h = await health(server)
  t.equal(h.status, 503, '/health is red')
  t.ok(
    h.processes.some((p) => p.key === 'worker-0-0' && (p as { circuitOpen?: boolean }).circuitOpen === true),
    '/health names the open circuit',
  )
  await server.waitForLog((l) => l.msg === 'crash loop: restart backed off')
  model.restore()
  t.ok(await waitHealthy(server, 90_000), 'with its model back the worker starts and /health is green')
  await server.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('crash loop over'))
  t.equal((await complete(server)).status, 200, 'requests are served again')
})

t.test('a request whose --request-timeout passes while it waits is not resumed', async (t) => {
  const model = modelCopy(t)
  const server = await startServer({ args: ['--model', model.dir, '--request-timeout', '2', '--crash-loop-deaths', '1000'] })
  t.teardown(() => server.stop())
  const res = await complete(server, { max_tokens: 2000, ignore_eos: true, stream: true, prompt: 'The old man' })
  t.equal(res.status, 200, 'the stream started')
  const rid = res.headers.get('x-request-id')!
  const reader = res.body!.getReader()
  await reader.read()
  // The worker cannot come back before the deadline: its model is away until the request has ended.
  model.hide()
  process.kill(server.childPids()['worker-0-0']!, 'SIGKILL')
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString('utf8')
  }
  t.match(text, /"code":"SPANSERVE_ERR_TIMEOUT"/, 'the stream ends with the timeout error event')
  t.match(text, /data: \[DONE\]\n\n$/, 'and [DONE]')
  model.restore()
  t.ok(await waitHealthy(server, 90_000), 'the worker is back')
  t.notOk(
    server.logs.some((l) => l.msg === 'request resumed' && l.rid === rid),
    'it was not resumed',
  )
  const failed = server.logs.find((l) => l.msg === 'request failed' && l.rid === rid)
  t.equal(failed?.code, 'SPANSERVE_ERR_TIMEOUT', 'it failed with its timeout')
  t.equal((await complete(server)).status, 200, 'the next request is served')
  const live = (await health(server)).reports.find((r) => r.role === 'server')?.live_requests
  t.equal(live, 0, 'the server holds nothing of it')
})
