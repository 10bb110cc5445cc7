/**
 * Tensor and data parallelism through the real processes: --tp-size 2 --dp-size 2 gives the same
 * greedy output as one worker, every rank traces its own thread span and slices, a rank that dies
 * takes only its group down, and a TP size that does not divide the heads is refused.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'
import { startServer, ROOT, TEST_CACHE_DIR, type RunningServer } from '../../harness/server.ts'

const PROMPTS = ['Once upon a time', 'The little girl', 'In the morning', 'The old man said']

async function complete(server: RunningServer, prompt: string, extra: object = {}) {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 24, temperature: 0, ...extra }),
  })
  return (await res.json()) as { choices: { text: string }[] }
}

async function outputs(server: RunningServer): Promise<string[]> {
  const greedy = await Promise.all(PROMPTS.map((p) => complete(server, p)))
  const seeded = await complete(server, 'Once upon a time', { temperature: 1, seed: 99 })
  return [...greedy.map((r) => r.choices[0]!.text), seeded.choices[0]!.text]
}

const single = await startServer()
const expected = await outputs(single)
await single.stop()

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const server = await startServer({ args: ['--tp-size', '2', '--dp-size', '2', '--trace-enable', '--trace-level', '3', '--otlp-traces-endpoint', receiver.endpoint] })
t.teardown(() => server.stop())

t.test('tp 2 × dp 2: the same greedy and seeded output as one worker', async (t) => {
  t.same(await outputs(server), expected)
  const workers = Object.keys(server.childPids())
    .filter((k) => k.startsWith('worker-'))
    .sort()
  t.same(workers, ['worker-0-0', 'worker-0-1', 'worker-1-0', 'worker-1-1'], 'four worker processes')
})

t.test('each worker process holds a shard, not the whole model', async (t) => {
  const ready = server.logs.filter((l) => l.msg === 'tensor-parallel rank ready')
  t.equal(ready.length, 4, 'every worker opened its rank shard')
  for (const l of ready) {
    const share = (l.weights_bytes as number) / (l.model_bytes as number)
    // Layers split in two; the embedding, norms (and on rank 0 the LM head) are whole.
    t.ok(share < 0.8, `rank ${l.tp_rank} of dp ${l.dp_rank} loads ${(share * 100).toFixed(0)}% of the model's bytes`)
  }
})

t.test('every rank traces its own thread span and slices, with the all-reduce time', async (t) => {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Hello there', max_tokens: 5, temperature: 0 }),
  })
  const traceId = res.headers.get('traceparent')!.split('-')[1]!
  await receiver.waitForSpans((s) => s.filter((x) => x.traceId === traceId && x.name.startsWith('Worker ')).length === 2, 20_000)
  await new Promise((r) => setTimeout(r, 1500))
  const spans = receiver.spans.filter((s) => s.traceId === traceId)
  const threads = spans.filter((s) => s.name.startsWith('Worker '))
  const dp = threads[0]!.attributes['spanserve.dp_rank']
  t.same(threads.map((s) => s.name.replace(/ \[[^\]]+ \d+\]$/, '')).sort(), [`Worker [TP 0] [DP ${dp}]`, `Worker [TP 1] [DP ${dp}]`], 'one thread span per TP rank of the chosen group')
  for (const rank of [0, 1]) {
    const thread = threads.find((s) => s.attributes['spanserve.tp_rank'] === rank)!
    const slices = spans.filter((s) => s.parentSpanId === thread.spanId)
    t.ok(
      slices.some((s) => s.name === 'prefill_forward'),
      `rank ${rank} prefill`,
    )
    const decodes = slices.filter((s) => s.name === 'decode_forward')
    t.equal(decodes.length, 4, `rank ${rank}: one decode slice per step`)
    t.ok(
      decodes.every((s) => s.resource['spanserve.tp_rank'] === rank && s.resource['spanserve.dp_rank'] === dp),
      "slices come from their rank's process",
    )
    t.ok(
      decodes.every((s) => typeof s.attributes['spanserve.tp.all_reduce_ms'] === 'number'),
      'and the all-reduce time',
    )
  }
  const dispatch = spans.find((s) => s.name === 'dpc_dispatch')!
  t.equal(dispatch.attributes['spanserve.dp_rank'], dp, 'dpc_dispatch names the chosen group')
})

t.test('a TP rank killed mid-stream: its group comes back whole, its requests resume, the other group keeps serving', async (t) => {
  const victim = server.childPids()['worker-1-1']!
  const sibling = server.childPids()['worker-1-0']!
  const prompts = ['Once upon a time', 'The little girl', 'In the morning', 'The old man']
  const request = (prompt: string, stream: boolean) =>
    fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', prompt, max_tokens: 400, temperature: 0, ignore_eos: true, stream }),
    })
  const faultFree = await Promise.all(prompts.map(async (p) => ((await (await request(p, false)).json()) as { choices: { text: string }[] }).choices[0]!.text))
  const streams = prompts.map(async (prompt) => (await request(prompt, true)).text())
  await new Promise((r) => setTimeout(r, 500))
  process.kill(victim, 'SIGKILL')
  const texts = await Promise.all(streams)
  const streamed = texts.map((raw) =>
    raw
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => (JSON.parse(e.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '')
      .join(''),
  )
  t.equal(texts.filter((x) => /SPANSERVE_ERR_/.test(x)).length, 0, 'no stream ends with an error event')
  t.equal(texts.filter((x) => /"finish_reason":"length"/.test(x)).length, 4, 'every request finishes')
  t.same(streamed, faultFree, 'each with the text of a fault-free run')
  t.ok(
    server.logs.some((l) => l.msg === 'request resumed'),
    "the dead group's requests were resumed",
  )
  const until = Date.now() + 40_000
  while (Date.now() < until && (await fetch(server.url + '/health')).status !== 200) await new Promise((r) => setTimeout(r, 200))
  t.equal((await fetch(server.url + '/health')).status, 200, 'the group is back')
  const pids = server.childPids()
  t.not(pids['worker-1-1'], victim, 'the dead rank was replaced')
  t.not(pids['worker-1-0'], sibling, 'and its TP sibling restarted with it')
  t.same(await outputs(server), expected, 'and the output is unchanged')
})

t.test('a TP size that does not divide the heads is refused at start-up', async (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/server/main.ts'), '--port', '0', '--tp-size', '4'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, SPANSERVE_LOG_FORMAT: 'json' },
  })
  t.equal(r.status, 1)
  t.match(r.stdout, /--tp-size 4 does not divide the model/)
  t.notMatch(r.stdout, /spanserve listening/)
})
