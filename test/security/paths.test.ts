/**
 * The key is decided on the matched route: every spelling of a protected path (percent-encoding,
 * doubled or trailing slashes, case, dot segments, `;` parameters, a query or a fragment), by
 * every method, gets 401 or 404 without the key, a path that reaches no route gets 404 with or
 * without it, and the server's state (the trace setting) is unchanged by any of it. The boundary
 * here is HTTP (bytes on a real socket, Fastify's router, the key check), so the app runs over a
 * scripted engine (test/helpers/scripted-app.ts) that answers every generation with "ok".
 */
import t from 'tap'
import { connect } from 'node:net'
import type { Test } from 'tap'
import { scriptedApp } from '../helpers/scripted-app.ts'

const API_KEY = 'sk-api-' + 'a'.repeat(24)
const ADMIN_KEY = 'sk-admin-' + 'b'.repeat(24)

interface Answer {
  status: number
  body: string
}

/** One request on its own connection, its target sent byte for byte as written (no client normalises it). */
function send(port: number, method: string, path: string, key: string | null, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const lines = [`${method} ${path} HTTP/1.1`, `host: 127.0.0.1:${port}`, 'connection: close']
    if (key !== null) lines.push(`authorization: Bearer ${key}`)
    if (body !== undefined) lines.push('content-type: application/json', `content-length: ${Buffer.byteLength(body)}`)
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(lines.join('\r\n') + '\r\n\r\n' + (body ?? '')))
    let raw = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => (raw += c))
    socket.on('error', reject)
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(raw)
      if (!status) return reject(new Error(`no HTTP answer to ${method} ${path}: ${JSON.stringify(raw.slice(0, 100))}`))
      resolve({ status: Number(status[1]), body: raw.slice(raw.indexOf('\r\n\r\n') + 4) })
    })
  })
}

/** Spellings of a route path that a router or a proxy might take for it. */
function spellings(path: string): string[] {
  const [, first, ...rest] = path.split('/') // '', 'v1', ...
  const tail = rest.join('/')
  const encodeAll = (s: string) => [...s].map((c) => (c === '/' ? c : '%' + c.charCodeAt(0).toString(16).padStart(2, '0'))).join('')
  const lastChar = path.length - 1
  return [
    path,
    `/%76${first!.slice(1)}/${tail}`, // /%761/models: the reported bypass
    `/%76%31/${tail}`,
    encodeAll(path),
    encodeAll(path)
      .toUpperCase()
      .replace(/%([0-9A-F]{2})/g, '%$1'),
    `${path.slice(0, lastChar)}%${path.charCodeAt(lastChar).toString(16)}`,
    '/' + path.slice(1).replace(/\//g, '%2F'),
    `/${first}%2F${tail}`,
    `/${path}`,
    `/${first}//${tail}`,
    `${path}/`,
    `${path}//`,
    path.toUpperCase(),
    `/V1/${tail}`,
    `/x/../${first}/${tail}`,
    `/${first}/./${tail}`,
    `/./${first}/${tail}`,
    `/%2e%2e/${first}/${tail}`,
    `/${first}/%2e/${tail}`,
    `${path};x=1`,
    `/${first};x=1/${tail}`,
    `${path}%3Bx=1`,
    `${path}?x=1`,
    `${path}?`,
    `${path}#fragment`,
    `${path}?a=1#b`,
    `${path}%00`,
    `${path}%20`,
    `${path}%09`,
    `${path}.`,
    `${path}\\`,
  ]
}

const ROUTES = [
  { method: 'GET', path: '/v1/models', body: undefined },
  { method: 'POST', path: '/v1/completions', body: JSON.stringify({ model: 'default', prompt: 'Hi', max_tokens: 1 }) },
  { method: 'POST', path: '/v1/chat/completions', body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 }) },
  { method: 'POST', path: '/v1/trace/setting', body: JSON.stringify({ level: 3, sample_rate: 0.25 }) },
  { method: 'POST', path: '/v1/trace/dump', body: undefined },
]

/** The app with these flags, listening on a free port of 127.0.0.1; the trace level put back at the end. */
async function listening(t: Test, argv: string[], controlKey: string): Promise<{ port: number }> {
  const { app } = await scriptedApp(t, { argv })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  // The trace setting is this process's: the next case starts from the default again.
  t.teardown(async () => void (await send(port, 'POST', '/v1/trace/setting', controlKey, '{"level":2,"sample_rate":1}')))
  return { port }
}

for (const admin of [false, true]) {
  t.test(admin ? 'with --admin-api-key: control routes take only the admin key' : 'with --api-key alone: every /v1 route takes the API key', async (t) => {
    const controlKey = admin ? ADMIN_KEY : API_KEY
    const server = await listening(t, ['--api-key', API_KEY, ...(admin ? ['--admin-api-key', ADMIN_KEY] : [])], controlKey)
    const setting = async () => JSON.parse((await send(server.port, 'GET', '/v1/trace/setting', API_KEY)).body) as Record<string, unknown>
    const before = await setting()
    t.equal(before.level, 2, 'the trace level starts at its default')

    // Reading the trace setting is data-plane; changing it is control-plane.
    const keyFor = (method: string, path: string) => (method === 'POST' && path.startsWith('/v1/trace/') ? controlKey : API_KEY)
    const probes = ROUTES.flatMap((route) =>
      spellings(route.path).flatMap((path) =>
        [route.method, 'HEAD', 'OPTIONS'].map((method) => ({ method, path, body: method === route.method ? route.body : undefined, key: keyFor(method, route.path) })),
      ),
    )
    // First every probe without the right key: no key, a wrong one, and (with an admin key) the other plane's key.
    const unmatched = new Set<string>()
    for (const p of probes) {
      const keys = admin ? [null, 'wrong', p.key === API_KEY ? ADMIN_KEY : API_KEY] : [null, 'wrong']
      for (const key of keys) {
        const res = await send(server.port, p.method, p.path, key, p.body)
        if (res.status === 404 || res.status === 405) unmatched.add(`${p.method} ${p.path}`)
        else if (res.status !== 401) t.fail(`${p.method} ${p.path} with key ${key}: ${res.status} ${res.body.slice(0, 200)}`)
      }
    }
    t.ok(probes.length > 300, `${probes.length} spellings by method, each sent without the right key`)
    t.same(await setting(), before, 'no spelling changed the trace setting without the key')

    // Then with the right key: a spelling that matched no route is still a 404 (or 405); one that did now passes the key check.
    for (const p of probes) {
      const res = await send(server.port, p.method, p.path, p.key, p.body)
      if (unmatched.has(`${p.method} ${p.path}`)) {
        if (res.status !== 404 && res.status !== 405) t.fail(`${p.method} ${p.path}: unmatched without the key, ${res.status} with it`)
      } else if (res.status === 401 || res.status >= 500) {
        // Past the key, the route answers for itself (GET /v1/models/ reaches /v1/models/:model, whose 404 names the model).
        t.fail(`${p.method} ${p.path} with the right key: ${res.status} ${res.body.slice(0, 200)}`)
      }
    }
    t.ok(unmatched.size < probes.length, `${probes.length - unmatched.size} spellings reached a route, and only with the key`)

    // The plain spellings with the right key still work, and percent-encoded ones reach the same route.
    t.equal((await send(server.port, 'GET', '/%761/models', API_KEY)).status, 200, 'an encoded spelling with the key reaches the route')
    t.equal((await send(server.port, 'POST', '/v1/trace/setting', controlKey, '{"level":3}')).status, 200, 'the control key changes the setting')
    t.equal((await setting()).level, 3)
    if (admin) {
      const res = await send(server.port, 'POST', '/v1/trace/setting', API_KEY, '{"level":1}')
      t.equal(res.status, 401, 'the API key cannot change the server when an admin key is set')
      t.match(JSON.parse(res.body), { error: { code: 'SPANSERVE_ERR_UNAUTHORIZED', type: 'authentication_error' } })
      t.equal((await send(server.port, 'POST', '/v1/chat/completions', ADMIN_KEY, ROUTES[2]!.body)).status, 401, 'the admin key is not a data-plane key')
    }
    t.equal((await send(server.port, 'GET', '/health', null)).status, 200, '/health stays open')
    t.equal((await send(server.port, 'GET', '/metrics', null)).status, 200, '/metrics stays open by default')
    t.equal((await send(server.port, 'GET', '/no/such/route', API_KEY)).status, 404, 'no route: 404 with the key')
    t.equal((await send(server.port, 'GET', '/no/such/route', null)).status, 404, 'no route: 404 without it')
  })
}

t.test('--protect-metrics: /metrics needs the admin key', async (t) => {
  const server = await listening(t, ['--api-key', API_KEY, '--admin-api-key', ADMIN_KEY, '--protect-metrics'], ADMIN_KEY)
  for (const path of ['/metrics', '/%6detrics', '/metrics?x=1', '/metrics;a']) {
    const res = await send(server.port, 'GET', path, null)
    t.ok(res.status === 401 || res.status === 404, `GET ${path} without a key: ${res.status}`)
  }
  t.equal((await send(server.port, 'GET', '/metrics', API_KEY)).status, 401, 'the data-plane key is not enough')
  const ok = await send(server.port, 'GET', '/metrics', ADMIN_KEY)
  t.equal(ok.status, 200)
  t.match(ok.body, /spanserve:num_requests_running/)
  t.equal((await send(server.port, 'GET', '/health', null)).status, 200, '/health stays open')
})
