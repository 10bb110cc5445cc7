/**
 * Across hosts: a TP group split over two nodes talking tcp (on loopback here). Node 1 runs only its
 * worker rank and connects it to node 0's server, scheduler and the other rank.
 */
import t from 'tap'
import { startServer, type RunningServer } from '../../harness/server.ts'
import { freePortRange } from '../helpers/ports.ts'

const PROMPTS = ['Once upon a time', 'The little girl', 'In the morning']
const greedy = async (server: RunningServer) =>
  Promise.all(
    PROMPTS.map(async (prompt) => {
      const res = await fetch(server.url + '/v1/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', prompt, max_tokens: 20, temperature: 0 }),
      })
      return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text
    }),
  )

const single = await startServer()
const expected = await greedy(single)
await single.stop()

// server, tokenizer, scheduler, two workers, two all-reduce inboxes, one node agent.
const base = await freePortRange(8)
// CURVE on every socket (--ipc-secret), as a deployment across hosts should run.
const common = ['--tp-size', '2', '--nnodes', '2', '--node-hosts', '127.0.0.1,127.0.0.1', '--ipc', `tcp://127.0.0.1:${base}`, '--ipc-secret', 'test-cluster-secret']
const node1 = await startServer({ args: [...common, '--node-rank', '1'], readyMessage: 'node agent running; workers report to node 0' })
t.teardown(() => node1.stop())
const node0 = await startServer({ args: [...common, '--node-rank', '0'] })
t.teardown(() => node0.stop())

t.test('a TP group over tcp across two nodes serves the same tokens', async (t) => {
  const health = (await (await fetch(node0.url + '/health')).json()) as { processes: { key: string; node: number; ready: boolean }[] }
  t.same(
    health.processes.filter((p) => p.key.startsWith('worker')).map((p) => [p.key, p.node, p.ready]),
    [
      ['worker-0-0', 0, true],
      ['worker-0-1', 1, true],
    ],
    'rank 1 runs on node 1',
  )
  t.ok(
    node0.logs.every((l) => l.msg !== 'worker started'),
    'node 0 did not start the remote rank',
  )
  t.same(await greedy(node0), expected)
})

t.test('the remote rank dies: node 1 restarts it, node 0 restarts the rest of the group, serving resumes', async (t) => {
  const remote = node1.childPids()['worker-0-1']!
  const local = node0.childPids()['worker-0-0']!
  process.kill(remote, 'SIGKILL')
  await node0.waitForLog((l) => l.msg === 'process died; restarting it' && l.child === 'worker-0-1', 10_000)
  const until = Date.now() + 40_000
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250))
    const h = await fetch(node0.url + '/health')
    if (h.status === 200 && node0.childPids()['worker-0-0'] !== local && node1.childPids()['worker-0-1'] !== remote) break
  }
  if ((await fetch(node0.url + '/health')).status !== 200) {
    // Say why, for whoever reads a failed run.
    for (const [n, logs] of [
      [0, node0.logs],
      [1, node1.logs],
    ] as const) {
      for (const l of logs.filter((l) => (l.level as number) >= 40).slice(-20)) t.comment(`node ${n}: ${JSON.stringify(l).slice(0, 300)}`)
    }
  }
  t.not(node1.childPids()['worker-0-1'], remote, 'node 1 started a new rank 1')
  t.not(node0.childPids()['worker-0-0'], local, 'node 0 restarted rank 0 with it')
  t.equal((await fetch(node0.url + '/health')).status, 200)
  t.same(await greedy(node0), expected)
})
