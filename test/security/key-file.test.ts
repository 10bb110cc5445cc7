/**
 * Keys from files, through the real processes: started with --api-key-file and
 * --admin-api-key-file, the server checks both keys, and neither key is on any process's command
 * line or in any child's environment, in any log line (at debug), or in /health. Given by
 * environment instead, neither key reaches a child. A file that holds no key stops the start with
 * a message naming the flag, and exit code 2.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT, TEST_CACHE_DIR, startServer } from '../../harness/server.ts'
import { configOrExit } from '../../src/server/supervisor/startup.ts'

const API_KEY = `sk-file-${randomBytes(8).toString('hex')}`
const ADMIN_KEY = `sk-admin-file-${randomBytes(8).toString('hex')}`

const dir = mkdtempSync(join(tmpdir(), 'spanserve-key-file-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const keyFile = join(dir, 'api-key')
const adminFile = join(dir, 'admin-key')
// As `echo KEY > file` writes it: with a line break, which is not part of the key.
writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 })
writeFileSync(adminFile, `${ADMIN_KEY}\n`, { mode: 0o600 })

/** What a process shows other users (`ps`): its command line, NUL-separated. */
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8')

t.test('keys from files: auth works, and no command line, log line or /health holds them', async (t) => {
  const server = await startServer({ args: ['--api-key-file', keyFile, '--admin-api-key-file', adminFile, '--log-level', 'debug'] })
  t.teardown(() => server.stop())
  let stderr = ''
  server.proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  const get = (path: string, key?: string) => fetch(server.url + path, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } })

  t.equal((await get('/v1/models')).status, 401, 'no key: 401')
  t.equal((await get('/v1/models', `${API_KEY}x`)).status, 401, 'a wrong key: 401')
  t.equal((await get('/v1/models', API_KEY)).status, 200, "the file's key: 200")
  const completion = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 4 }),
  })
  t.equal(completion.status, 200, "a completion with the file's key")

  // The admin key, from its own file, is the one that changes the server.
  const setting = (await (await get('/v1/trace/setting', API_KEY)).json()) as Record<string, unknown>
  const post = (key: string) =>
    fetch(server.url + '/v1/trace/setting', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ level: setting.level }) })
  t.equal((await post(API_KEY)).status, 401, 'the API key cannot change the server')
  t.equal((await post(ADMIN_KEY)).status, 200, "the admin file's key can")

  const health = await (await get('/health')).text()
  t.notOk(health.includes(API_KEY) || health.includes(ADMIN_KEY), '/health holds neither key')

  const pids = server.childPids()
  t.same(Object.keys(pids).sort(), ['scheduler-0', 'tokenizer', 'worker-0-0'], 'every child reported its pid')
  for (const [role, pid] of Object.entries({ server: server.proc.pid!, ...pids })) {
    const line = cmdline(pid)
    t.notOk(line.includes(API_KEY) || line.includes(ADMIN_KEY), `${role} (pid ${pid}): neither key on its command line`)
    if (role !== 'server') {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8')
      t.notOk(environ.includes(API_KEY) || environ.includes(ADMIN_KEY), `${role}: neither key in its environment`)
      t.notOk(environ.includes(keyFile) || environ.includes(adminFile), `${role}: nor where they are kept`)
    }
  }

  t.equal(await server.stop(), 0, 'stopped cleanly')
  const logs = server.logs.map((l) => JSON.stringify(l)).join('\n') + stderr
  t.ok(server.logs.length > 5, `${server.logs.length} log lines read`)
  t.notOk(logs.includes(API_KEY), 'no log line holds the API key')
  t.notOk(logs.includes(ADMIN_KEY), 'no log line holds the admin key')
})

t.test('keys from the environment: served, and no child inherits either variable', async (t) => {
  const server = await startServer({ env: { SPANSERVE_API_KEY: API_KEY, SPANSERVE_ADMIN_API_KEY: ADMIN_KEY } })
  t.teardown(() => server.stop())
  t.equal((await fetch(server.url + '/v1/models', { headers: { authorization: `Bearer ${API_KEY}` } })).status, 200, 'SPANSERVE_API_KEY is the key')
  for (const [role, pid] of Object.entries(server.childPids())) {
    const seen = readFileSync(`/proc/${pid}/environ`, 'utf8') + cmdline(pid)
    t.notOk(seen.includes(API_KEY) || seen.includes(ADMIN_KEY), `${role}: neither key in its environment or command line`)
  }
})

t.test('a file that holds no key stops the start with exit code 2, naming the flag', async (t) => {
  const empty = join(dir, 'empty')
  writeFileSync(empty, '\n', { mode: 0o600 })
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['an empty file', ['--api-key-file', empty], {}, /--api-key-file: .*empty/],
    ['a missing file', ['--admin-api-key-file', join(dir, 'absent')], {}, /--admin-api-key-file: cannot read .*ENOENT/],
    ['the file by variable, missing', [], { SPANSERVE_API_KEY_FILE: join(dir, 'absent') }, /--api-key-file: cannot read .*ENOENT/],
    ['a key and a file', ['--api-key', 'sk-both', '--api-key-file', keyFile], {}, /--api-key and --api-key-file are both set/],
  ]
  // The configuration is read before anything starts: no child is spawned. The first case goes
  // through the real entry (src/server/main.ts, whose first step is configOrExit); the others through
  // configOrExit itself, in this process, with process.exit and stderr caught.
  const [first, ...rest] = cases
  {
    const [what, args, env, message] = first!
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/server/main.ts'), '--port', '0', ...args], {
      cwd: ROOT,
      env: { ...process.env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    })
    t.equal(run.status, 2, `${what}: exit code 2`)
    t.match(run.stderr, message, `${what}: ${run.stderr.trim()}`)
    t.notOk(run.stderr.includes(API_KEY), `${what}: the message holds no key`)
  }
  for (const [what, args, env, message] of rest) {
    const { status, stderr } = configExit(['--port', '0', ...args], env)
    t.equal(status, 2, `${what}: exit code 2`)
    t.match(stderr, message, `${what}: ${stderr.trim()}`)
    t.notOk(stderr.includes(API_KEY), `${what}: the message holds no key`)
  }
})

class Exited extends Error {
  constructor(readonly code: number | undefined) {
    super(`process.exit(${code})`)
  }
}

/** configOrExit as the server's start runs it, with `env` set: the exit code it asked for and what it wrote to stderr. */
function configExit(argv: string[], env: Record<string, string>): { status: number | null; stderr: string } {
  const saved = { exit: process.exit, write: process.stderr.write, env: { ...process.env } }
  let stderr = ''
  process.exit = ((code?: number) => {
    throw new Exited(code)
  }) as typeof process.exit
  process.stderr.write = ((chunk: string) => {
    stderr += chunk
    return true
  }) as typeof process.stderr.write
  Object.assign(process.env, env)
  try {
    configOrExit(argv)
    return { status: null, stderr }
  } catch (err) {
    if (err instanceof Exited) return { status: err.code ?? 0, stderr }
    throw err
  } finally {
    process.exit = saved.exit
    process.stderr.write = saved.write
    for (const key of Object.keys(env)) if (!(key in saved.env)) delete process.env[key]
    Object.assign(process.env, saved.env)
  }
}
