/**
 * The prefix cache under tensor and data parallelism, through the real processes: with --tp-size 2
 * each rank caches its shard of the same blocks (they agree: the outputs are the unsharded server's
 * and cached_tokens is what the one tree holds), and with --dp-size 2 each group's scheduler has its
 * own tree, the tokenizer sends a prompt to the group holding its prefix, and the outputs do not change.
 */
import t from 'tap'
import { KV_BLOCK_TOKENS as BT } from '../../src/ipc/kv-blocks.ts'
import { startServer, type RunningServer } from '../../harness/server.ts'

const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 20 + ((i * 131 + seed * 17) % 900))
const SYS = ids(40, 1)
const PROMPTS = [
  [...SYS, ...ids(10, 2)],
  [...SYS, ...ids(10, 3)],
  [...SYS, ...ids(10, 2)],
  [...SYS, ...ids(30, 4)],
]
/** What the tree holds for each prompt when they run one after another. */
const CACHED = [0, 2 * BT, 3 * BT, 2 * BT]

async function complete(server: RunningServer, prompt: number[]): Promise<{ text: string; cached: number | undefined }> {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: 12, temperature: 0, ignore_eos: true }),
  })
  const body = (await res.json()) as { choices: { text: string }[]; usage: { prompt_tokens_details?: { cached_tokens: number } } }
  return { text: body.choices[0]!.text, cached: body.usage.prompt_tokens_details?.cached_tokens }
}

async function sequential(server: RunningServer) {
  const out: { text: string; cached: number | undefined }[] = []
  for (const p of PROMPTS) out.push(await complete(server, p))
  return out
}

const plain = await startServer({ args: ['--disable-radix-cache', '--max-prefill-tokens', '24'] })
const expected = (await sequential(plain)).map((o) => o.text)
await plain.stop()

t.test('--tp-size 2: the ranks agree on the cached blocks', async (t) => {
  const server = await startServer({ args: ['--tp-size', '2', '--max-prefill-tokens', '24'] })
  t.teardown(() => server.stop())
  const out = await sequential(server)
  t.same(
    out.map((o) => o.text),
    expected,
    'greedy outputs equal the unsharded server without the cache',
  )
  t.same(
    out.map((o) => o.cached),
    CACHED,
    'cached_tokens is what the tree holds',
  )
})

t.test("--dp-size 2: each group's tree, the same outputs", async (t) => {
  const server = await startServer({ args: ['--dp-size', '2', '--max-prefill-tokens', '24'] })
  t.teardown(() => server.stop())
  const first = await sequential(server)
  t.same(
    first.map((o) => o.text),
    expected,
  )
  t.same(
    first.map((o) => o.cached),
    CACHED,
    'cache-aware dispatch sends each prompt to the group holding its prefix',
  )
  // Concurrently, twice over: whichever group a request lands on, its output is the same.
  const again = await Promise.all([...PROMPTS, ...PROMPTS].map((p) => complete(server, p)))
  t.same(
    again.map((o) => o.text),
    [...expected, ...expected],
  )
  t.ok(
    again.every((o) => o.cached !== undefined && o.cached % BT === 0 && o.cached < PROMPTS[0]!.length + 30),
    'cached_tokens are whole blocks of the prompt',
  )
  t.ok(
    again.some((o) => o.cached! > 0),
    "the groups' trees are used",
  )
})
