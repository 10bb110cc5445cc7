/**
 * The worker's memory settings (docs/operations.md, "Memory and the KV budget"): workers start with
 * glibc limited to two heaps (MALLOC_ARENA_MAX=2), so what ONNX Runtime's threads free is reused
 * rather than kept per thread, unless the operator set it; ONNX Runtime's CPU arena is off unless
 * --cpu-mem-arena. Read from the running processes themselves, a replacement worker included.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { startServer, type RunningServer } from '../helpers/server.ts'

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

t.test('workers run with MALLOC_ARENA_MAX=2, the other children as started', async (t) => {
  const server = await startServer({ args: ['--tp-size', '2'] })
  t.teardown(() => server.stop())
  const workers = workerPids(server)
  t.equal(workers.length, 2, 'two workers (one per TP rank)')
  const ready = server.logs.filter((l) => l.msg === 'process ready' && String(l.child).startsWith('worker-'))
  t.same(ready.map((l) => l.cpu_mem_arena), [false, false], "each worker's ready line: ONNX Runtime's CPU arena off")
  for (const pid of workers) t.equal(environ(pid).get('MALLOC_ARENA_MAX'), DEFAULT, `worker ${pid}`)
  for (const [role, pid] of Object.entries(server.childPids())) {
    if (!role.startsWith('worker-')) t.equal(environ(pid).get('MALLOC_ARENA_MAX'), process.env.MALLOC_ARENA_MAX, `${role} is not given it`)
  }

  // A worker started again after a crash gets the same.
  const victim = server.childPids()['worker-0-0']!
  process.kill(victim, 'SIGKILL')
  const restarted = await server.waitForLog((l) => l.child === 'worker-0-0' && typeof l.child_pid === 'number' && l.child_pid !== victim, 60_000)
  t.equal(environ(restarted.child_pid as number).get('MALLOC_ARENA_MAX'), DEFAULT, 'the replacement worker')
})

t.test("an operator's MALLOC_ARENA_MAX is kept; --cpu-mem-arena turns the arena back on", async (t) => {
  const server = await startServer({ args: ['--cpu-mem-arena'], env: { MALLOC_ARENA_MAX: '4' } })
  t.teardown(() => server.stop())
  for (const pid of workerPids(server)) t.equal(environ(pid).get('MALLOC_ARENA_MAX'), '4', `worker ${pid}`)
  t.equal(server.logs.find((l) => l.msg === 'process ready' && l.child === 'worker-0-0')?.cpu_mem_arena, true, "the worker's ready line")
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 4 }) })
  t.equal(res.status, 200, 'and it serves')
})
