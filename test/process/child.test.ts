/**
 * The shared entry of every child process, on real processes and ZeroMQ: its title, its ready and
 * stats reports, the code its fatal report carries, drain on SIGTERM, and death with its parent.
 */
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CHILD_ENV, processLabel, type LaunchSpec } from '../../src/process/child.ts'
import { Inbox } from '../../src/ipc/channel.ts'
import type { Endpoints } from '../../src/ipc/endpoints.ts'
import type { Message, ProcessFatal, ProcessReady, ProcessStats } from '../../src/ipc/messages.ts'
import type { ModelInfo } from '../../src/model/load.ts'
import { parseConfig } from '../../src/config/parse.ts'
import { ROOT } from '../../harness/server.ts'

const FIXTURE = join(ROOT, 'test/process/fixtures/child.ts')
const dir = mkdtempSync(join(tmpdir(), 'spanserve-process-'))
let n = 0

/** The launcher's side: an inbox for the child's reports, and the spec the child starts from. */
async function launcher(t: Test) {
  const server = `ipc://${join(dir, `server-${n++}.sock`)}`
  const got: Message[] = []
  let wake: (() => void) | null = null
  const push = (m: Message) => {
    got.push(m)
    wake?.()
  }
  const inbox = new Inbox(server, { ready: push, fatal: push, process_stats: push }, (err) => t.fail(String(err)), null)
  await inbox.bind()
  t.teardown(() => inbox.close())
  const spec: LaunchSpec = {
    role: 'scheduler',
    dpRank: 1,
    tpRank: 0,
    config: parseConfig(['--dp-size', '2', '--stats-interval', '0.05', '--log-level', 'error'], {}).config,
    endpoints: { server } as Endpoints,
    model: {} as ModelInfo,
    contextLength: 128,
  }
  return {
    spec,
    got,
    /** The first message of this kind; throws after 30 s without one. */
    async next<T extends Message['type']>(type: T): Promise<Extract<Message, { type: T }>> {
      const until = Date.now() + 30_000
      for (;;) {
        const hit = got.find((m) => m.type === type)
        if (hit) return hit as Extract<Message, { type: T }>
        if (Date.now() > until) throw new Error(`no ${type} message in 30 s`)
        await new Promise<void>((r) => {
          wake = r
          setTimeout(r, 100)
        })
      }
    },
  }
}

/** Starts the fixture child; the test ends it by its pid if it is still running. */
function startChild(t: Test, spec: LaunchSpec | null, behaviour = 'serve'): { proc: ChildProcess; exited: Promise<number | null>; out: () => string } {
  const env: NodeJS.ProcessEnv = { ...process.env, CHILD_BEHAVIOUR: behaviour }
  delete env[CHILD_ENV]
  if (spec) env[CHILD_ENV] = JSON.stringify(spec)
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()))
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, 'SIGKILL')
  })
  return { proc, exited, out: () => out }
}

t.test('processLabel names the role and, where they mean something, the ranks', async (t) => {
  t.equal(processLabel('server', 0, 0, 2, 2), 'spanserve::server')
  t.equal(processLabel('tokenizer', 0, 0, 2, 2), 'spanserve::tokenizer', 'one tokenizer for all groups')
  t.equal(processLabel('scheduler', 1, 0, 2, 1), 'spanserve::scheduler DP1')
  t.equal(processLabel('scheduler', 0, 0, 1, 2), 'spanserve::scheduler', 'no DP rank without data parallelism')
  t.equal(processLabel('worker', 1, 3, 2, 4), 'spanserve::worker DP1 TP3')
  t.equal(processLabel('worker', 0, 0, 1, 1), 'spanserve::worker')
})

t.test('a child reports ready under its title, then its stats; SIGTERM runs its closers and it exits 0', async (t) => {
  const l = await launcher(t)
  const child = startChild(t, l.spec)
  const ready: ProcessReady = await l.next('ready')
  t.equal(ready.pid, child.proc.pid)
  t.same(ready.detail, { title: 'spanserve::scheduler DP1' }, 'the process title names role and DP rank')
  const stats: ProcessStats = await l.next('process_stats')
  t.match(stats, { role: 'scheduler', dpRank: 1, tpRank: 0, pid: child.proc.pid, liveRequests: 3, tracedRequests: 0, droppedSpans: 0, scheduler: null, worker: null })
  t.ok(stats.rssBytes > stats.heapUsedBytes && stats.heapUsedBytes > 0, 'memory figures from the process itself')
  process.kill(child.proc.pid!, 'SIGTERM')
  t.equal(await child.exited, 0)
  t.match(child.out(), /closer ran/)
})

t.test("a start that fails reports fatal with the error's code from the table, and exits 1", async (t) => {
  for (const [behaviour, code, message] of [
    ['model-load-error', 'SPANSERVE_ERR_MODEL_INVALID', 'config.json: missing field "vocab_size"'],
    ['plain-error', 'SPANSERVE_ERR_INTERNAL', 'something broke'],
  ] as const) {
    const l = await launcher(t)
    const child = startChild(t, l.spec, behaviour)
    const fatal: ProcessFatal = await l.next('fatal')
    t.match(fatal, { role: 'scheduler', dpRank: 1, tpRank: 0, pid: child.proc.pid, code, message }, behaviour)
    t.equal(await child.exited, 1)
  }
})

t.test('started without its launch spec, a child says so and exits 2', async (t) => {
  const child = startChild(t, null)
  t.equal(await child.exited, 2)
  t.match(child.out(), /started without SPANSERVE_CHILD; this process is started by the launcher/)
})

t.test('a child dies with its parent, even one killed with SIGKILL', async (t) => {
  const l = await launcher(t)
  // A parent that starts the child and prints its pid, as the launcher would.
  const script = `const { spawn } = require('node:child_process')
const c = spawn(process.execPath, ['--import', 'tsx', ${JSON.stringify(FIXTURE)}], { cwd: ${JSON.stringify(ROOT)}, env: process.env, stdio: 'ignore' })
console.log(c.pid)
setInterval(() => {}, 1000)`
  const parent = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, CHILD_BEHAVIOUR: 'serve', [CHILD_ENV]: JSON.stringify(l.spec) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const childPid = await new Promise<number>((resolve) => parent.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))))
  // Running, as opposed to gone or a zombie that nobody reaped yet (its parent is dead).
  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
    } catch {
      return false
    }
  }
  t.teardown(() => {
    for (const pid of [parent.pid!, childPid]) if (alive(pid)) process.kill(pid, 'SIGKILL')
  })
  const ready = await l.next('ready')
  t.equal(ready.pid, childPid, 'the child is up')
  process.kill(parent.pid!, 'SIGKILL')
  const until = Date.now() + 10_000
  while (alive(childPid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
  t.notOk(alive(childPid), 'the orphaned child exited on its own')
})
