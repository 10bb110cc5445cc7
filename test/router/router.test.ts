/**
 * `spanserve router` in front of three real spanserve instances (the embedded model), one set for
 * every subtest: a conversation's turns stay on one instance and hit its prefix cache from the
 * second turn; a second conversation goes elsewhere; SSE through the router with the official
 * openai client; GET /v1/models; an instance killed with SIGKILL: the next turn, which the policy
 * sends there, is served by another; SIGTERM drains the router and it exits 0.
 */
import OpenAI from 'openai'
import t from 'tap'
import { startRouter } from '../../harness/router.ts'
import { startServer, type RunningServer } from '../../harness/server.ts'
import { alive } from '../helpers/processes.ts'
import { parseExposition } from '../helpers/prometheus.ts'

const servers = await Promise.all([0, 1, 2].map(() => startServer()))
/** Every pid this file started, for the teardown: the servers and their children. */
const pids = servers.flatMap((s) => [s.proc.pid!, ...Object.values(s.childPids())])
t.teardown(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL')
})

/** The router as users start it (`npx spanserve router`), logging JSON lines. */
const router = await startRouter([...servers.flatMap((s) => ['--instance', s.url]), '--health-check-interval', '30'])
t.teardown(() => {
  if (router.proc.exitCode === null) router.proc.kill('SIGKILL')
})
const routerLogs = router.logs
const ROUTER = router.url
const client = new OpenAI({ baseURL: ROUTER + '/v1', apiKey: 'unused', maxRetries: 0 })

async function metrics() {
  return parseExposition(await (await fetch(ROUTER + '/metrics')).text())
}

/** Which instance answered the requests sent while `send` ran: the one whose request count grew. */
async function servedBy<T>(send: () => Promise<T>): Promise<[RunningServer, T]> {
  const before = await metrics()
  const result = await send()
  const after = await metrics()
  const grew = servers.filter((s) => after.sum('spanserve:router_requests_total', { instance: s.url }) > before.sum('spanserve:router_requests_total', { instance: s.url }))
  if (grew.length !== 1) throw new Error(`expected one instance to answer, got ${grew.length}`)
  return [grew[0]!, result]
}

const SYSTEM =
  'You are a storyteller who answers in the voice of an old sailor. Every answer is short, plain and kind, and it always names the sea, the ship, the weather and the harbour where the story happens, so that the listener can picture all of it.'

type Message = OpenAI.Chat.ChatCompletionMessageParam

/** One turn of a conversation: the answer is appended to `messages`. */
async function turn(messages: Message[], user: string): Promise<{ cached: number; text: string }> {
  messages.push({ role: 'user', content: user })
  const res = await client.chat.completions.create({ model: 'default', messages, max_tokens: 8, temperature: 0 })
  const text = res.choices[0]!.message.content ?? ''
  messages.push({ role: 'assistant', content: text })
  return { cached: res.usage?.prompt_tokens_details?.cached_tokens ?? 0, text }
}

const conversation: Message[] = [{ role: 'system', content: SYSTEM }]
let home: RunningServer

t.test("a conversation's turns all land on one instance and hit its cache from the second turn", async (t) => {
  const [first] = await servedBy(() => turn(conversation, 'Tell me about the first storm.'))
  home = first
  for (const [i, question] of ['And what happened next?', 'How did it end?'].entries()) {
    const [server, { cached }] = await servedBy(() => turn(conversation, question))
    t.equal(server, home, `turn ${i + 2} is served by the instance that served turn 1`)
    t.ok(cached > 0, `turn ${i + 2}: usage.prompt_tokens_details.cached_tokens is ${cached}`)
  }
  // A new conversation shares nothing with the first: it goes to another, idle, instance.
  const [other] = await servedBy(() => turn([{ role: 'user', content: 'Name three colours of the morning sky over a quiet town.' }], 'Quickly, please.'))
  t.not(other, home, 'a second conversation goes to another instance')
  const m = await metrics()
  t.equal(m.sum('spanserve:router_decisions_total', { decision: 'cache_hit' }), 2, 'turns 2 and 3 were cache hits')
  t.equal(m.sum('spanserve:router_decisions_total', { decision: 'cache_miss' }), 2, 'the two first turns were misses')
})

t.test('SSE through the router with the openai client', async (t) => {
  const stream = await client.chat.completions.create({
    model: 'default',
    messages: [{ role: 'user', content: 'Sing a short song about the tide.' }],
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  })
  let text = ''
  let chunks = 0
  let finish: string | null = null
  let usage: OpenAI.CompletionUsage | undefined
  for await (const chunk of stream) {
    chunks++
    text += chunk.choices[0]?.delta.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
    usage = chunk.usage ?? usage
  }
  t.ok(text.length > 0, 'streamed text arrived')
  t.ok(chunks > 2, `${chunks} chunks`)
  t.ok(finish === 'length' || finish === 'stop', `finish_reason ${finish}`)
  t.ok(usage !== undefined && usage.completion_tokens > 0, 'the usage chunk came through')
})

t.test('GET /v1/models passes through to an instance', async (t) => {
  const models = await client.models.list()
  t.same(
    models.data.map((m) => m.id),
    ['default'],
  )
})

t.test('an instance killed with SIGKILL: the next turn, routed there, is served by another', async (t) => {
  const victim = home
  const victimPids = [victim.proc.pid!, ...Object.values(victim.childPids())]
  victim.proc.kill('SIGKILL')
  await new Promise((r) => victim.proc.once('exit', r))
  const before = await metrics()
  const [server, { text }] = await servedBy(() => turn(conversation, 'Tell it once more.'))
  t.not(server, victim, 'another instance answered')
  t.type(text, 'string')
  const after = await metrics()
  t.equal(
    after.sum('spanserve:router_upstream_failures_total', { instance: victim.url }) - before.sum('spanserve:router_upstream_failures_total', { instance: victim.url }),
    1,
    'the policy sent it to the killed instance first',
  )
  t.equal(after.sum('spanserve:router_retries_total') - before.sum('spanserve:router_retries_total'), 1, 'and retried it once')
  t.equal(after.sum('spanserve:router_instance_healthy', { instance: victim.url }), 0, 'the killed instance gets no new requests')
  t.equal(after.sum('spanserve:router_instance_healthy'), 2)
  // Its children leave with it (they watch their parent); the teardown ends any left.
  for (const pid of victimPids.slice(1)) if (alive(pid)) process.kill(pid, 'SIGKILL')
})

t.test('SIGTERM drains the router: it exits 0', async (t) => {
  router.proc.kill('SIGTERM')
  t.equal(await router.exited, 0)
  t.ok(routerLogs.some((l) => l.msg === 'router shutting down'))
})
