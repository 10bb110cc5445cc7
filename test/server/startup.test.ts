/** Start-up: --help, refused flags, and a model directory that cannot be served. */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../../harness/server.ts'

const run = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/server/main.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, SPANSERVE_LOG_FORMAT: 'json' } })

t.test('--help lists the flags with defaults and exits 0', async (t) => {
  const r = run(['--help'])
  t.equal(r.status, 0)
  for (const flag of ['--host', '--port', '--model', '--model-preset', '--device', '--max-batch-size', '--max-queue', '--trace-enable']) t.match(r.stdout, flag)
  t.match(r.stdout, /default: 8000/)
})

t.test('an unknown flag is refused with a message', async (t) => {
  const r = run(['--bogus-flag'])
  t.equal(r.status, 2)
  t.match(r.stderr, /unknown flag --bogus-flag/)
})

t.test('a bad value is refused with a message', async (t) => {
  const r = run(['--device', 'tpu'])
  t.equal(r.status, 2)
  t.match(r.stderr, /--device: expected one of auto, cpu, cuda/)
})

t.test('a model directory without config.json fails before any port opens', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-badmodel-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tokenizer.json'), '{}')
  const r = run(['--model', dir, '--port', '0'])
  t.equal(r.status, 1)
  t.match(r.stdout, /config\.json/)
  t.notMatch(r.stdout, /spanserve listening/)
})
