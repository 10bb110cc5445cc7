/**
 * Clients through the real server: a request of several sequences reserving more than its share of
 * the KV budget is a 400 naming the field; each request's client (its X-Spanserve-Client header,
 * else a hash of its bearer token, else its address) is in the `request finished` log line and in
 * bounded per-client counters on /metrics, and an API key never appears in either.
 */
import t from 'tap'
import { OBSERVED, sharedServer } from '../helpers/shared-server.ts'
import { parseExposition } from '../helpers/prometheus.ts'

// OBSERVED has --max-total-tokens 4096: at the default share (0.5), one request may reserve 2048 tokens.
const server = await sharedServer(OBSERVED)

const post = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'default', prompt: 'Once', max_tokens: 2, temperature: 0, ...body }),
  })

t.test('n × (prompt + max_tokens) beyond the share of the KV budget is a 400 naming the field', async (t) => {
  const refused = async (body: Record<string, unknown>, param: string) => {
    const res = await post(body)
    t.equal(res.status, 400, `${JSON.stringify(body).slice(0, 80)}: 400`)
    const err = ((await res.json()) as { error: { code: string; param: string | null; message: string } }).error
    t.equal(err.code, 'SPANSERVE_ERR_INVALID_REQUEST')
    t.equal(err.param, param, `param is ${param}`)
    t.match(err.message, /--max-request-kv-share/, 'the message names the bound')
  }
  await refused({ n: 8, max_tokens: 300 }, 'n') // 8 × (1 + 300) > 2048
  await refused({ n: 2, best_of: 8, max_tokens: 300 }, 'best_of')
  // A token-id prompt counts: 8 × 160 fits, 8 × (100 + 160) does not.
  await refused({ n: 8, prompt: Array.from({ length: 100 }, (_, i) => 100 + i), max_tokens: 160 }, 'n')
  await refused({ prompt: ['Once', 'upon', 'a', 'time'], max_tokens: 600 }, 'prompt')
  const fits = await post({ n: 6, max_tokens: 300, ignore_eos: true })
  t.equal(fits.status, 200, 'within the share: served')
})

t.test('the client is in the request-finished log and in bounded /metrics labels, never the key', async (t) => {
  const secret = 'sk-very-secret-key-1234567890'
  t.equal((await post({}, { 'x-spanserve-client': 'team-a' })).status, 200)
  t.equal((await post({}, { authorization: `Bearer ${secret}` })).status, 200)
  t.equal((await post({})).status, 200)
  // More clients than the metrics name: the rest count as "other".
  for (let i = 0; i < 20; i++) t.equal((await post({}, { 'x-spanserve-client': `bulk-${i}` })).status, 200)
  const finished = server.logs.filter((l) => l.msg === 'request finished')
  const clients = finished.map((l) => l.client)
  t.ok(clients.includes('team-a'), 'the header names the client')
  const keyed = clients.find((c) => typeof c === 'string' && c.startsWith('key:'))
  t.match(keyed, /^key:[0-9a-f]{16}$/, 'a bearer token counts as a hash of it')
  t.ok(
    clients.some((c) => typeof c === 'string' && c.startsWith('ip:')),
    'else the remote address',
  )
  t.notOk(JSON.stringify(server.logs).includes(secret), 'the key is in no log line')

  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.notOk(text.includes(secret), 'nor on /metrics')
  const m = parseExposition(text)
  const labels = new Set(m.samples.filter((s) => s.name === 'spanserve:client_requests_total').map((s) => s.labels.client))
  t.ok(labels.has('team-a') && labels.has(keyed as string), 'the first clients by name')
  t.ok(labels.has('other'), 'later ones as other')
  t.ok(labels.size <= 17, `bounded: ${labels.size} labels`)
  t.ok(m.sum('spanserve:client_generation_tokens_total', { client: 'team-a' }) >= 1, 'tokens per client')
  t.equal(m.sum('spanserve:client_requests_total'), m.sum('spanserve:request_success_total'), 'every finished request counted once')
})
