/** SIGTERM drains: requests in flight finish, every child ends, exit 0. A taken port fails the launch fast. */
import t from 'tap'
import { createServer } from 'node:net'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { startServer, ROOT, TEST_CACHE_DIR } from '../../harness/server.ts'
import { alive } from '../helpers/processes.ts'

t.test('SIGTERM finishes the stream in flight, ends every child and exits 0', async (t) => {
  const server = await startServer()
  t.teardown(() => server.stop())
  const children = Object.values(server.childPids())
  t.equal(children.length, 3)
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 300, temperature: 0, ignore_eos: true, stream: true }),
  })
  const reader = res.body!.getReader()
  const first = await reader.read()
  t.notOk(first.done)
  const exited = new Promise<number | null>((resolve) => server.proc.once('exit', (code) => resolve(code)))
  server.proc.kill('SIGTERM')
  let text = Buffer.from(first.value!).toString()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString()
  }
  t.match(text, /"finish_reason":"length"/, 'the request in flight finished')
  t.match(text, /data: \[DONE\]\n\n$/)
  t.equal(await exited, 0, 'exit code 0')
  t.ok(
    children.every((pid) => !alive(pid)),
    'no child is left',
  )
  await t.rejects(fetch(server.url + '/health'), 'the port is closed')
})

t.test('a taken port fails the launch with the reason', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as { port: number }).port
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/server/main.ts'), '--port', String(port)], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, SPANSERVE_LOG_FORMAT: 'json' },
  })
  t.equal(r.status, 1)
  t.match(r.stdout, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`))
})
