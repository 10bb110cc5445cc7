/**
 * The worker's memory settings (docs/operations.md, "Memory and the KV budget"): workers start with
 * glibc limited to two heaps (MALLOC_ARENA_MAX=2), so what ONNX Runtime's threads free is reused
 * rather than kept per thread, asking for transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)
 * for the KV blocks a filling prefix cache touches, and with V8's old generation limit starting at 128 MB, so that ONNX
 * Runtime's output buffers do not set off a full collection every few steps, unless the operator set
 * either; ONNX Runtime's CPU arena is off unless --cpu-mem-arena. Read from the running processes
 * themselves, a replacement worker included.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { startServer, type RunningServer } from '../../harness/server.ts'

function environ(pid: number): Map<string, string> {
  const vars = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)
  return new Map(vars.map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)]))
}

function workerPids(server: RunningServer): number[] {
  return Object.entries(server.childPids())
    .filter(([role]) => role.startsWith('worker-'))
    .map(([, pid]) => pid)
}

// Where this test itself runs with MALLOC_ARENA_MAX set, that value is the operator's and wins.
const DEFAULT = process.env.MALLOC_ARENA_MAX ?? '2'
const TUNABLES = process.env.GLIBC_TUNABLES ?? 'glibc.malloc.hugetlb=1'

t.test('workers run with MALLOC_ARENA_MAX=2 and glibc.malloc.hugetlb=1, the other children as started', async (t) => {
  const server = await startServer({ args: ['--tp-size', '2'] })
  t.teardown(() => server.stop())
  const workers = workerPids(server)
  t.equal(workers.length, 2, 'two workers (one per TP rank)')
  const ready = server.logs.filter((l) => l.msg === 'process ready' && String(l.child).startsWith('worker-'))
  t.same(
    ready.map((l) => l.cpu_mem_arena),
    [false, false],
    "each worker's ready line: ONNX Runtime's CPU arena off",
  )
  t.same(
    ready.map((l) => l.initial_old_space_mb),
    [128, 128],
    "and V8's old generation limit starting at 128 MB",
  )
  for (const pid of workers) {
    t.equal(environ(pid).get('MALLOC_ARENA_MAX'), DEFAULT, `worker ${pid}`)
    t.equal(environ(pid).get('GLIBC_TUNABLES'), TUNABLES, `worker ${pid}: huge pages for what glibc maps`)
  }
  for (const [role, pid] of Object.entries(server.childPids())) {
    if (role.startsWith('worker-')) continue
    t.equal(environ(pid).get('MALLOC_ARENA_MAX'), process.env.MALLOC_ARENA_MAX, `${role} is not given it`)
    t.equal(environ(pid).get('GLIBC_TUNABLES'), process.env.GLIBC_TUNABLES, `${role} is not given the tunables`)
  }

  // A worker started again after a crash gets the same.
  const victim = server.childPids()['worker-0-0']!
  process.kill(victim, 'SIGKILL')
  const restarted = await server.waitForLog((l) => l.child === 'worker-0-0' && typeof l.child_pid === 'number' && l.child_pid !== victim, 60_000)
  t.equal(environ(restarted.child_pid as number).get('MALLOC_ARENA_MAX'), DEFAULT, 'the replacement worker')
  const again = await server.waitForLog((l) => l.msg === 'process ready' && l.child === 'worker-0-0' && l.child_pid === restarted.child_pid, 60_000)
  t.equal(again.initial_old_space_mb, 128, "the replacement's ready line: the same heap limit")
})

t.test("an operator's MALLOC_ARENA_MAX, GLIBC_TUNABLES and heap limit are kept; --cpu-mem-arena turns the arena back on", async (t) => {
  const server = await startServer({ args: ['--cpu-mem-arena'], env: { MALLOC_ARENA_MAX: '4', GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }, nodeArgs: ['--initial-old-space-size=64'] })
  t.teardown(() => server.stop())
  for (const pid of workerPids(server)) {
    t.equal(environ(pid).get('MALLOC_ARENA_MAX'), '4', `worker ${pid}`)
    t.equal(environ(pid).get('GLIBC_TUNABLES'), 'glibc.malloc.hugetlb=0', `worker ${pid}: the operator's tunables`)
  }
  const ready = server.logs.find((l) => l.msg === 'process ready' && l.child === 'worker-0-0')
  t.equal(ready?.cpu_mem_arena, true, "the worker's ready line: the arena on")
  t.equal(ready?.initial_old_space_mb, 64, 'and the heap limit the server was started with')
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 4 }),
  })
  t.equal(res.status, 200, 'and it serves')
})
