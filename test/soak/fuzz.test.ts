/**
 * 600 generated malformed requests through the real processes: every one gets a 4xx in OpenAI's
 * error shape — never a 5xx, a crash or a hang — and the server is healthy and correct afterwards.
 */
import t from 'tap'
import { request } from 'node:http'
import { startServer } from '../../harness/server.ts'

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
  null,
  [],
  'hi',
  [{}],
  [{ role: 'user' }],
  [{ role: 'wizard', content: 'a' }],
  [{ role: 'user', content: 1 }],
  [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
  [{ role: 'tool', content: 'x' }],
  [{ role: 'user', content: 'word '.repeat(5000) }],
]
const BAD_TRACEPARENTS = [
  'garbage',
  '00-xyz-abc-01',
  '00-00000000000000000000000000000000-0000000000000000-01',
  'ff-' + 'a'.repeat(32) + '-' + 'b'.repeat(16) + '-01',
  '00-' + 'A'.repeat(32) + '-' + 'B'.repeat(16) + '-zz',
  '',
]

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

/** Any method and path (sent as is, undecoded) through node:http; the body, when given, as JSON. */
function raw(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(server.url + '/', { method, path, headers: body === undefined ? {} : { 'content-type': 'application/json' }, timeout: 60_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 60 s (a hang)')))
    req.on('error', reject)
    req.end(body)
  })
}

/** The OpenAI error in `text`, or null when `text` is not OpenAI's error shape. */
function openAIError(text: string): { message: string; type: string; param: string | null; code: string } | null {
  try {
    const e = (JSON.parse(text) as { error?: Record<string, unknown> }).error
    const shaped = typeof e?.message === 'string' && typeof e.type === 'string' && 'param' in e && (e.param === null || typeof e.param === 'string') && typeof e.code === 'string'
    return shaped ? (e as { message: string; type: string; param: string | null; code: string }) : null
  } catch {
    return null
  }
}

/** A body whose `field` holds `depth` nested arrays (or objects), written as text: JSON.stringify itself would overflow. */
function nested(base: object, field: string, depth: number, open = '[', close = ']', inner = ''): string {
  const json = JSON.stringify(base)
  return `${json.slice(0, -1)},"${field}":${open.repeat(depth)}${inner}${close.repeat(depth)}}`
}

/** 130,000 fields no schema declares. */
const manyFields = (): Record<string, number> => Object.fromEntries(Array.from({ length: 130_000 }, (_, i) => [`f${i}`, i]))

t.test('hostile shapes: width, depth, structural tags, undecodable paths', async (t) => {
  const pidsBefore = server.childPids()
  const warnedBefore = server.logs.filter((l) => String(l.msg).startsWith('request fields ignored')).length

  await t.test('a message with 130,000 unknown fields is served; the warning names a bounded few', async (t) => {
    const res = await raw('POST', '/v1/chat/completions', JSON.stringify({ ...chat(), messages: [{ role: 'user', content: 'Hello', ...manyFields() }] }))
    t.equal(res.status, 200, res.text.slice(0, 200))
    const line = await server.waitForLog((l) => String(l.msg).startsWith('request fields ignored') && (l.ignored_fields as string[])[0] === 'messages.0.f0')
    t.ok((line.ignored_fields as string[]).length <= 32, `${(line.ignored_fields as string[]).length} names logged`)
    t.equal(line.ignored_fields_more, true, 'the line says there were more')
    t.ok(String(line.msg).length < 2000, 'the line stays short')
    t.equal(server.logs.filter((l) => String(l.msg).startsWith('request fields ignored')).length, warnedBefore + 1, 'one line for the request')
  })

  // Each of these must be a 4xx in OpenAI's shape (and `param` where one field is at fault).
  const tag = (structural_tag: unknown) => JSON.stringify({ ...completion(), structured_outputs: { structural_tag } })
  const TAG = 'structured_outputs.structural_tag'
  const any = { type: 'any_text' }
  const bad: [string, string, string, string | null][] = [
    ['130,000 unknown top-level fields and a bad max_tokens', '/v1/completions', JSON.stringify({ ...completion(), ...manyFields(), max_tokens: '4' }), 'max_tokens'],
    ['130,000 unknown fields in a message and a bad role', '/v1/chat/completions', JSON.stringify({ ...chat(), messages: [{ role: 'wizard', content: 'x', ...manyFields() }] }), 'messages.0.role'],
    ['an unknown field 100,000 arrays deep', '/v1/completions', nested(completion(), 'extra', 100_000), null],
    ['an unknown field 100,000 objects deep', '/v1/completions', nested(completion(), 'extra', 100_000, '{"a":', '}', '{}'), null],
    [
      'tool parameters 100,000 objects deep',
      '/v1/chat/completions',
      `${JSON.stringify(chat()).slice(0, -1)},"tools":[{"type":"function","function":{"name":"f","parameters":${'{"a":'.repeat(100_000)}{}${'}'.repeat(100_000)}}}]}`,
      null,
    ],
    ['a prompt of 1,000 arrays deep', '/v1/completions', nested({ model: 'default', max_tokens: 2 }, 'prompt', 1000), null],
    ['structural_tag {"type":"bogus"}', '/v1/completions', tag({ type: 'bogus' }), TAG],
    ['structural_tag "{\\"type\\":\\"bogus\\"}" as text', '/v1/completions', tag('{"type":"bogus"}'), TAG],
    ['structural_tag without a format', '/v1/completions', tag({ type: 'structural_tag' }), TAG],
    ['structural_tag of an unknown format type', '/v1/completions', tag({ type: 'structural_tag', format: { type: 'nope' } }), TAG],
    ['structural_tag tag without end', '/v1/completions', tag({ format: { type: 'tag', begin: '<a>', content: any } }), TAG],
    ['structural_tag sequence of nothing', '/v1/completions', tag({ format: { type: 'sequence', elements: [] } }), TAG],
    ['structural_tag with a number for a format', '/v1/completions', tag({ format: 7 }), TAG],
    [
      'structural_tag triggers that begin no tag',
      '/v1/completions',
      tag({ format: { type: 'triggered_tags', triggers: ['<x'], tags: [{ type: 'tag', begin: '<y>', content: any, end: '</y>' }] } }),
      TAG,
    ],
    ['structural_tag legacy without triggers', '/v1/completions', tag({ type: 'structural_tag', structures: [{ begin: '<a>', schema: { type: 'object' }, end: '</a>' }] }), TAG],
    ['structural_tag legacy structure without a schema', '/v1/completions', tag({ type: 'structural_tag', structures: [{ begin: '<a>', end: '</a>' }], triggers: ['<a'] }), TAG],
    ['structural_tag as text that is not JSON', '/v1/completions', tag('{"type":'), TAG],
    ['structural_tag as text 100,000 arrays deep', '/v1/completions', tag('['.repeat(100_000)), TAG],
    // The body schema refuses it first, naming the field that holds the alternatives.
    ['structural_tag as an array', '/v1/completions', tag([]), 'structured_outputs'],
    ['guided_json as text 100,000 objects deep', '/v1/completions', JSON.stringify({ ...completion(), guided_json: '{"a":'.repeat(100_000) }), 'guided_json'],
  ]
  for (const [what, path, body, param] of bad) {
    const res = await raw('POST', path, body)
    const e = openAIError(res.text)
    t.ok(res.status >= 400 && res.status < 500 && e !== null, `${what}: 4xx in OpenAI's shape (got ${res.status} ${res.text.slice(0, 160)})`)
    if (param !== null) t.match(e?.param, param, `${what}: param`)
  }

  for (const path of ['/v1/models/%ff', '/v1/%zz', '/%', '/v1/models/%E0%A4%A', '/v1/models/%', '/%ff/health', `/v1/responses/${'x'.repeat(300)}`]) {
    for (const method of ['GET', 'POST']) {
      const res = await raw(method, path, method === 'POST' ? JSON.stringify(completion()) : undefined)
      const e = openAIError(res.text)
      t.ok(res.status >= 400 && res.status < 500 && e !== null, `${method} ${path}: 4xx in OpenAI's shape (got ${res.status} ${res.text.slice(0, 160)})`)
    }
  }

  await t.test('nesting within the bound is served; JSON text in a field is bounded too', async (t) => {
    t.equal((await raw('POST', '/v1/completions', nested(completion(), 'extra', 100))).status, 200, 'an unknown field 100 arrays deep')
    // Tool-call arguments are JSON text the template is given as an object: too deep, it stays text.
    const deepArguments = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)
    const messages = [
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: deepArguments } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'done' },
    ]
    const res = await raw('POST', '/v1/chat/completions', JSON.stringify({ ...chat(), messages }))
    t.ok(res.status === 200 || (res.status >= 400 && res.status < 500 && openAIError(res.text) !== null), `arguments 100,000 objects deep: ${res.status} ${res.text.slice(0, 160)}`)
  })

  await t.test('well-formed structural tags, both forms, are served', async (t) => {
    const triggered = {
      type: 'structural_tag',
      format: { type: 'triggered_tags', triggers: ['<a'], tags: [{ type: 'tag', begin: '<a>', content: { type: 'json_schema', json_schema: { type: 'object' } }, end: '</a>' }] },
    }
    const legacy = { type: 'structural_tag', structures: [{ begin: '<a>', schema: { type: 'object' }, end: '</a>' }], triggers: ['<a'] }
    const constant = { type: 'structural_tag', format: { type: 'const_string', value: 'Hello there' } }
    for (const [what, st] of [
      ['triggered tags', triggered],
      ['legacy structures', legacy],
      ['legacy as text', JSON.stringify(legacy)],
      ['a constant', constant],
    ] as const) {
      const res = await raw('POST', '/v1/completions', tag(st))
      t.equal(res.status, 200, `${what}: ${res.text.slice(0, 200)}`)
    }
  })

  t.equal((await fetch(server.url + '/health')).status, 200, 'still healthy')
  t.same(server.childPids(), pidsBefore, 'no process crashed or was replaced')
  t.same(
    server.logs.filter((l) => (l.level as number) >= 50).map((l) => JSON.stringify(l).slice(0, 300)),
    [],
    'no error line (a 500, a crash) in any log',
  )
})

t.test('healthy afterwards, and the next valid request is correct', async (t) => {
  t.equal((await fetch(server.url + '/health')).status, 200)
  const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...completion(), temperature: 0 }) })
  const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } }
  t.equal(body.usage.completion_tokens, 4)
  t.match(body.choices[0]!.text, /^, there was/, 'the greedy continuation is the usual one')
})
