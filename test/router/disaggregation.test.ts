/**
 * Prefill/decode disaggregation end to end: `spanserve router --prefill … --decode …` in front of a
 * prefill instance and a decode instance (the embedded model; their KV socket under CURVE with a
 * shared --ipc-secret), against a co-located instance of the
 * same model, every process traced to one OTLP receiver (the real wire).
 * - Greedy text through the pair equals the co-located instance's (completions and chat, whole and
 *   streamed, with the official openai client), with the same usage; the prompt's KV really crossed
 *   (decode_waiting ended `transferred`); a repeated prompt reports cached tokens.
 * - One trace: the router's span, a `Bootstrap Room 0x…` span under it, and each instance's request
 *   tree under that, with SGLang's PD slice names on each side and the decode side's
 *   decode_transferred linked to the prefill side's prefill_transfer_kv_cache.
 * - Either side lost: KV that never comes (its prefill instance gone) is waited for
 *   --disaggregation-transfer-timeout, then prefilled on the decode instance; a decode worker
 *   SIGKILLed mid-stream is replaced and the stream resumed, with the same text.
 */
import OpenAI from 'openai'
import t from 'tap'
import { startOtlpReceiver, type ReceivedSpan } from '../../harness/otlp-receiver.ts'
import { startRouter } from '../../harness/router.ts'
import { startServer } from '../../harness/server.ts'
import { alive } from '../helpers/processes.ts'

const receiver = await startOtlpReceiver({ protocol: 'grpc' })
t.teardown(() => receiver.close())
const traced = ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint]
// The KV crosses over tcp with CURVE, keyed from the secret both sides share.
const keyed = ['--ipc-secret', 'pd-test-secret']
const env = { OTEL_BSP_SCHEDULE_DELAY: '100' }
const [prefill, decode, colocated] = await Promise.all([
  startServer({ args: [...traced, ...keyed, '--disaggregation-mode', 'prefill'], env }),
  startServer({ args: [...traced, ...keyed, '--disaggregation-mode', 'decode', '--disaggregation-bootstrap-port', '0', '--disaggregation-transfer-timeout', '3'], env }),
  startServer(),
])
const servers = [prefill!, decode!, colocated!]
const pids = () => servers.flatMap((s) => [s.proc.pid!, ...Object.values(s.childPids())])
const started = pids()
t.teardown(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  for (const pid of [...started, ...pids()]) if (alive(pid)) process.kill(pid, 'SIGKILL')
})

const router = await startRouter(['--prefill', prefill!.url, '--decode', decode!.url, '--health-check-interval', '1', ...traced], env)
t.teardown(() => {
  if (router.proc.exitCode === null) router.proc.kill('SIGKILL')
})
const ROUTER = router.url
// The router checks health every second: wait until it has seen both instances up.
for (let i = 0; i < 100; i++) {
  const h = (await (await fetch(ROUTER + '/health')).json()) as { status?: string }
  if (h.status === 'ok') break
  await new Promise((r) => setTimeout(r, 100))
}
const viaRouter = new OpenAI({ baseURL: ROUTER + '/v1', apiKey: 'unused', maxRetries: 0 })
const direct = new OpenAI({ baseURL: colocated!.url + '/v1', apiKey: 'unused', maxRetries: 0 })

// Long enough for several whole KV blocks (16 tokens each) to cross.
const STORY = 'The history of the city goes back to the days when the river was the only road, and the people who lived along it built their houses out of the stones they found on its banks. '
const prompt = (topic: string) => `${STORY}${topic} Over the years`

t.test('greedy text and usage through the pair equal the co-located instance', async (t) => {
  for (const [i, topic] of ['The bakers came first.', 'The fishermen came first.'].entries()) {
    const body = { model: 'default', prompt: prompt(topic), max_tokens: 24, temperature: 0 }
    const [pd, one] = await Promise.all([viaRouter.completions.create(body), direct.completions.create(body)])
    t.equal(pd.choices[0]!.text, one.choices[0]!.text, `completion ${i}: same text`)
    t.equal(pd.usage!.prompt_tokens, one.usage!.prompt_tokens, 'same prompt tokens')
    t.equal(pd.usage!.completion_tokens, 24, 'every token generated on the decode side')
  }
  const messages = [{ role: 'user' as const, content: prompt('Tell me about the bridges.') }]
  const chat = { model: 'default', messages, max_tokens: 20, temperature: 0 }
  const [pd, one] = await Promise.all([viaRouter.chat.completions.create(chat), direct.chat.completions.create(chat)])
  t.equal(pd.choices[0]!.message.content, one.choices[0]!.message.content, 'chat: same text')
  let streamed = ''
  for await (const chunk of await viaRouter.chat.completions.create({ ...chat, stream: true })) streamed += chunk.choices[0]?.delta.content ?? ''
  t.equal(streamed, one.choices[0]!.message.content, 'chat streamed through the pair: same text')

  const again = await viaRouter.completions.create({ model: 'default', prompt: prompt('The bakers came first.'), max_tokens: 4, temperature: 0 })
  t.ok((again.usage as { prompt_tokens_details?: { cached_tokens?: number } }).prompt_tokens_details!.cached_tokens! > 0, 'a repeated prompt reports cached tokens')
})

const pidsOf = (s: (typeof servers)[number]) => new Set([s.proc.pid!, ...Object.values(s.childPids())])
const from = (s: (typeof servers)[number], span: ReceivedSpan) => pidsOf(s).has(Number(span.resource['process.pid']))

t.test('one trace across router, prefill and decode instances, under the bootstrap room', async (t) => {
  const res = await fetch(ROUTER + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: prompt('The weavers came first.'), max_tokens: 8, temperature: 0 }),
  })
  t.equal(res.status, 200)
  await res.json()
  const names = ['prefill_bootstrap', 'prefill_transfer_kv_cache', 'decode_prepare', 'decode_bootstrap', 'decode_waiting', 'decode_transferred']
  const spans = await receiver.waitForSpans((all) => {
    const room = all.find((s) => s.name.startsWith('Bootstrap Room 0x') && !all.some((o) => o.traceId === s.traceId && o.name === 'Bootstrap Room'))
    if (!room) return false
    const mine = all.filter((s) => s.traceId === room.traceId)
    return names.every((n) => mine.some((s) => s.name === n)) && mine.filter((s) => s.name === 'llm_request').length === 2
  }, 30_000)
  // The newest bootstrap room: this request's (the earlier subtest sent others).
  const rooms = spans.filter((s) => s.name.startsWith('Bootstrap Room 0x'))
  const traceId = [...rooms].reverse().find((r) => names.every((n) => spans.some((s) => s.traceId === r.traceId && s.name === n)))!.traceId
  const mine = spans.filter((s) => s.traceId === traceId)
  const room = mine.find((s) => s.name.startsWith('Bootstrap Room 0x'))!
  const routerSpan = mine.find((s) => s.spanId === room.parentSpanId)
  t.ok(routerSpan, "the bootstrap room span is under the router's span")
  t.match(room.name, /^Bootstrap Room 0x[0-9a-f]+$/, "SGLang's name, the room in hex")
  t.equal(BigInt(room.name.slice('Bootstrap Room '.length)), BigInt(room.attributes['spanserve.bootstrap_room'] as number), 'and its attribute')
  const roots = mine.filter((s) => s.name === 'llm_request')
  t.ok(roots.some((s) => from(prefill!, s)) && roots.some((s) => from(decode!, s)), 'a request tree on each instance')
  for (const root of roots) {
    // llm_request sits under the instance's HTTP span, itself under the bootstrap room.
    const http = mine.find((s) => s.spanId === root.parentSpanId)
    t.equal(http?.parentSpanId, room.spanId, `${from(prefill!, root) ? 'prefill' : 'decode'} instance: its HTTP span is a child of the bootstrap room`)
  }
  const one = (name: string) => mine.find((s) => s.name === name)!
  for (const n of ['prefill_bootstrap', 'prefill_transfer_kv_cache']) t.ok(from(prefill!, one(n)), `${n} on the prefill instance`)
  for (const n of ['decode_prepare', 'decode_bootstrap', 'decode_waiting', 'decode_transferred']) t.ok(from(decode!, one(n)), `${n} on the decode instance`)
  t.equal(one('decode_waiting').attributes['spanserve.kv_transfer.outcome'], 'transferred', 'the KV crossed')
  t.ok(Number(one('decode_transferred').attributes['spanserve.kv_transfer.blocks']) > 0, 'whole blocks were written')
  t.ok(Number(one('prefill_transfer_kv_cache').attributes['spanserve.kv_transfer.bytes']) > 0, 'and sent')
  t.ok(
    one('decode_transferred').links.some((l) => l.spanId === one('prefill_transfer_kv_cache').spanId),
    "decode_transferred links to the prefill side's prefill_transfer_kv_cache",
  )
  t.notOk(
    mine.some((s) => s.name === 'prefill_waiting' && from(decode!, s)),
    "the decode side's queue slice is decode_prepare",
  )
})

t.test('KV that never comes: the decode instance prefills after its timeout', async (t) => {
  const body = { model: 'default', prompt: prompt('The potters came first.'), max_tokens: 12, temperature: 0 }
  const began = Date.now()
  const res = await fetch(decode!.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    // A room no prefill instance will send: as if its prefill instance died.
    body: JSON.stringify({ ...body, bootstrap_room: 424242 }),
  })
  const out = (await res.json()) as { choices: { text: string }[] }
  t.ok(Date.now() - began >= 2900, 'it waited --disaggregation-transfer-timeout')
  t.equal(out.choices[0]!.text, (await direct.completions.create(body)).choices[0]!.text, 'then answered, the same text')
})

t.test('a decode worker killed mid-stream: replaced, and the stream resumed with the same text', async (t) => {
  const body = { model: 'default', prompt: prompt('The masons came first.'), max_tokens: 200, temperature: 0, ignore_eos: true }
  const expected = (await direct.completions.create(body)).choices[0]!.text
  const res = await fetch(ROUTER + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) })
  t.equal(res.status, 200)
  const reader = res.body!.getReader()
  let sse = ''
  const first = await reader.read()
  sse += Buffer.from(first.value!).toString('utf8')
  const worker = decode!.childPids()['worker-0-0']!
  process.kill(worker, 'SIGKILL')
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    sse += Buffer.from(value).toString('utf8')
  }
  const text = sse
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => (JSON.parse(l.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '')
    .join('')
  t.notMatch(sse, /"error"/, 'no error event')
  t.equal(text, expected, 'the same text as the co-located instance')
  await decode!.waitForLog((l) => l.msg === 'process ready' && l.child === 'worker-0-0' && l.child_pid !== worker, 60_000)
  t.not(decode!.childPids()['worker-0-0'], worker, 'a new worker took its place')
})
