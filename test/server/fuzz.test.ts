/**
 * 600 generated malformed requests through the real processes: every one gets a 4xx in OpenAI's
 * error shape — never a 5xx, a crash or a hang — and the server is healthy and correct afterwards.
 */
import t from 'tap'
import { request } from 'node:http'
import { startServer } from '../helpers/server.ts'

const server = await startServer()
t.teardown(() => server.stop())

/** mulberry32, so a failure can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    let x = (s = (s + 0x6d2b79f5) >>> 0)
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
const SEED = 20261121
const rand = rng(SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!

const completion = () => ({ model: 'default', prompt: 'Once upon a time', max_tokens: 4 })
const chat = () => ({ model: 'default', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 })

/** Values that make each field invalid, whatever else the request says. */
const INVALID: Record<string, unknown[]> = {
  model: [1, null, true, [], {}, 'x'.repeat(300), 'no-such-model'],
  max_tokens: ['10', 0, -1, 1.5, 1e308, -1e308, true, {}, [], 1e7, 2 ** 53 + 2],
  temperature: ['1', -0.1, 2.01, 1e308, true, {}, [], -1e-9],
  top_p: [0, -1, 1.01, '0.5', true, {}],
  top_k: [-2, 1.5, '3', true, 1e9],
  seed: [1.5, '1', true, {}, [], 1e30],
  stop: [1, [1], [''], '', ['x'.repeat(300)], Array.from({ length: 65 }, () => 'a'), Array.from({ length: 5000 }, (_, i) => `s${i}`), {}, true],
  stream: ['yes', 1, {}, []],
  n: [0, -1, '1', 1.5, 10_000],
  stream_options: ['x', 1, [], { include_usage: 'yes' }],
  frequency_penalty: [2.01, -2.5, '0', true],
  presence_penalty: [-2.01, 3, '1'],
  logit_bias: [{ '1': 101 }, { '1': -100.5 }, { x: 1 }, { '99999': 1 }, 'x', []],
  ignore_eos: ['true', 1],
}
const INVALID_PROMPT = [null, 1, true, {}, [], [[]], [1.5], [-1], [2 ** 31], ['a', 1], [[1], 'a'], [1e6], 'word '.repeat(5000)]
const INVALID_MESSAGES = [
  null, [], 'hi', [{}], [{ role: 'user' }], [{ role: 'wizard', content: 'a' }], [{ role: 'user', content: 1 }],
  [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }], [{ role: 'tool', content: 'x' }],
  [{ role: 'user', content: 'word '.repeat(5000) }],
]
const BAD_TRACEPARENTS = ['garbage', '00-xyz-abc-01', '00-00000000000000000000000000000000-0000000000000000-01', 'ff-' + 'a'.repeat(32) + '-' + 'b'.repeat(16) + '-01', '00-' + 'A'.repeat(32) + '-' + 'B'.repeat(16) + '-zz', '']

interface Case {
  path: string
  body: string | Uint8Array
  headers: Record<string, string>
  what: string
}

function mutateBody(): Case {
  const isChat = rand() < 0.35
  const body: Record<string, unknown> = isChat ? chat() : completion()
  const roll = rand()
  let what: string
  if (roll < 0.15) {
    const field = isChat ? 'messages' : 'prompt'
    body[field] = pick(isChat ? INVALID_MESSAGES : INVALID_PROMPT)
    what = `${field}=${JSON.stringify(body[field]).slice(0, 40)}`
  } else if (roll < 0.25) {
    const field = pick(isChat ? ['model', 'messages'] : ['model', 'prompt'])
    delete body[field]
    what = `missing ${field}`
  } else if (roll < 0.35) {
    const name = pick(['foo', 'temprature', 'max_token', 'Prompt', '__proto__', 'constructor', 'tools_x'])
    // defineProperty: a plain assignment to __proto__ would set the prototype, not send the key.
    Object.defineProperty(body, name, { value: pick([1, 'x', null, {}, []]), enumerable: true, configurable: true, writable: true })
    // Unknown fields are ignored (vLLM's behaviour): the body is made invalid by a known one too.
    body.model = pick(INVALID.model!)
    what = `unknown field ${name} with model=${JSON.stringify(body.model)?.slice(0, 40)}`
  } else {
    const field = pick(Object.keys(INVALID))
    body[field] = pick(INVALID[field]!)
    what = `${field}=${JSON.stringify(body[field])?.slice(0, 40)}`
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (rand() < 0.3) headers.traceparent = pick(BAD_TRACEPARENTS)
  return { path: isChat ? '/v1/chat/completions' : '/v1/completions', body: JSON.stringify(body), headers, what }
}

function mangledBody(): Case {
  const valid = JSON.stringify(completion())
  const kinds: [string, () => string | Uint8Array, Record<string, string>?][] = [
    ['empty', () => ''],
    ['truncated JSON', () => valid.slice(0, Math.floor(rand() * (valid.length - 1)))],
    ['JSON null', () => 'null'],
    ['JSON array', () => '[]'],
    ['JSON string', () => '"prompt"'],
    ['JSON number', () => '123'],
    ['NaN literal', () => valid.replace('4', 'NaN')],
    ['random bytes', () => Uint8Array.from({ length: 64 }, () => Math.floor(rand() * 256))],
    ['invalid UTF-8', () => new Uint8Array(Buffer.concat([Buffer.from('{"model":"default","prompt":"a'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]))],
    ['10 MB body', () => JSON.stringify({ ...completion(), prompt: 'x'.repeat(10 * 1024 * 1024) })],
    ['text/plain', () => valid, { 'content-type': 'text/plain' }],
    ['form', () => 'model=default&prompt=x', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['no content type', () => valid, {}],
    ['wrong method path', () => valid],
  ]
  const [what, make, headers] = pick(kinds)
  return {
    path: what === 'wrong method path' ? '/v1/completion' : '/v1/completions',
    body: make(),
    headers: headers ?? { 'content-type': 'application/json' },
    what,
  }
}

/**
 * node:http rather than fetch: a server that refuses an oversized body answers 413 and closes while
 * the client is still writing, which fetch reports as EPIPE without the response it did receive.
 */
function send(c: Case): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false
    const req = request(server.url + c.path, { method: 'POST', headers: c.headers, timeout: 30_000 }, (res) => {
      answered = true
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, text }))
      res.on('error', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s (a hang)')))
    req.on('error', (err) => {
      if (!answered) reject(err)
    })
    req.end(c.body)
  })
}

const cases: Case[] = Array.from({ length: 600 }, () => (rand() < 0.75 ? mutateBody() : mangledBody()))

t.test(`600 malformed requests (seed ${SEED}) all get a 4xx in OpenAI's shape`, async (t) => {
  const pidsBefore = server.childPids()
  const bad: string[] = []
  let next = 0
  const worker = async () => {
    while (next < cases.length) {
      const c = cases[next++]!
      const res = await send(c)
      const text = res.text
      let shaped = false
      try {
        const e = (JSON.parse(text) as { error?: Record<string, unknown> }).error
        shaped = typeof e?.message === 'string' && typeof e.type === 'string' && 'param' in e && typeof e.code === 'string'
      } catch {
        shaped = false
      }
      if (res.status < 400 || res.status >= 500 || !shaped) bad.push(`${res.status} ${c.what}: ${text.slice(0, 120)}`)
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  t.same(bad, [], 'no request escaped with a 2xx, a 5xx or another error shape')
  t.same(server.childPids(), pidsBefore, 'no process crashed or was replaced')
})

t.test('a valid body with a malformed traceparent is served: the header is ignored, as W3C says', async (t) => {
  for (const tp of BAD_TRACEPARENTS) {
    const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json', traceparent: tp }, body: JSON.stringify(completion()) })
    t.equal(res.status, 200, `traceparent ${JSON.stringify(tp)}`)
  }
})

t.test('healthy afterwards, and the next valid request is correct', async (t) => {
  t.equal((await fetch(server.url + '/health')).status, 200)
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...completion(), temperature: 0 }) })
  const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } }
  t.equal(body.usage.completion_tokens, 4)
  t.match(body.choices[0]!.text, /^, there was/, 'the greedy continuation is the usual one')
})
