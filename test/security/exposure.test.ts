/**
 * What a running spanserve exposes, through the real processes:
 * - its ZeroMQ ipc sockets live in a private directory (0700, this user's) that goes with it;
 * - by default it listens on 127.0.0.1 only;
 * - prompts, completions, the API key and the collector's headers never reach a log line or a
 *   span unless the operator opts in (--trace-record-content, which puts the content in spans);
 * - --trace-ignore-parent-sampling with --trace-sample-rate 0 records nothing for a caller's
 *   sampled traceparent, in any process; without the flag the caller's decision is followed.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { startServer, type RunningServer } from '../../harness/server.ts'
import { startOtlpReceiver } from '../../harness/otlp-receiver.ts'

// Each case starts its own server(s); two at a time keeps the file short on a busy machine.
t.jobs = 2

/** Paths of the unix sockets process `pid` holds open (bound or accepted), from /proc. */
function unixSocketPaths(pid: number): string[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link = ''
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      continue
    }
    const m = /^socket:\[(\d+)\]$/.exec(link)
    if (m) inodes.add(m[1]!)
  }
  const paths = new Set<string>()
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length >= 8 && inodes.has(f[6]!)) paths.add(f[7]!)
  }
  return [...paths]
}

/** Whether a TCP connection to host:port is accepted (false on refusal, error or 3 s of silence). */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const done = (ok: boolean) => {
      clearTimeout(timer)
      s.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), 3000)
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

t.test('ipc sockets live in a private directory that is removed at exit; default bind is 127.0.0.1', async (t) => {
  const server = await startServer()
  t.teardown(() => server.stop())
  const serverPid = server.proc.pid!

  // The directory the server's own inbox (server.sock) is bound in, as the kernel reports it.
  const sock = unixSocketPaths(serverPid).find((p) => basename(p) === 'server.sock')
  t.ok(sock, `the server holds an ipc socket (${sock})`)
  const dir = dirname(sock!)
  t.equal(dirname(dir), tmpdir(), 'the directory is in the temporary directory')
  t.match(basename(dir), /^spanserve-[A-Za-z0-9]{6}$/, 'made by mkdtemp spanserve-XXXXXX')
  for (const name of ['server', 'tokenizer', 'scheduler-0', 'worker-0-0']) t.ok(existsSync(join(dir, `${name}.sock`)), `${name}.sock exists while it runs`)
  for (const [role, pid] of Object.entries(server.childPids())) {
    t.ok(
      unixSocketPaths(pid).some((p) => dirname(p) === dir),
      `${role} (pid ${pid}) uses sockets in the same directory`,
    )
  }
  const st = statSync(dir)
  t.equal((st.mode & 0o777).toString(8), '700', 'mode 0700: no other user can reach the sockets')
  t.equal(st.uid, process.getuid!(), 'owned by the user running the server')

  // Default bind.
  const listening = server.logs.find((l) => l.msg === 'spanserve listening')!
  t.equal(listening.host, '127.0.0.1', "the 'spanserve listening' line names host 127.0.0.1")
  t.ok(await canConnect('127.0.0.1', server.port), 'reachable on 127.0.0.1')
  const others = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && !(a.family === 'IPv6' && a.address.startsWith('fe80:')))
    .map((a) => a!.address)
  if (others.length === 0) {
    t.pass('no non-loopback address on this machine: nothing more to try')
  } else {
    // Control: the addresses are reachable for a listener on every interface…
    const open = createServer((s) => s.destroy())
    await new Promise<void>((r) => open.listen(0, '::', r))
    const openPort = (open.address() as { port: number }).port
    for (const addr of others) {
      const control = await canConnect(addr, openPort)
      t.ok(control, `control: ${addr} accepts connections for a listener on all interfaces`)
      // …but not for spanserve's default bind.
      if (control) t.notOk(await canConnect(addr, server.port), `spanserve is not reachable via ${addr}`)
    }
    await new Promise<void>((r) => open.close(() => r()))
  }

  t.equal(await server.stop(), 0, 'SIGTERM: exit code 0')
  t.notOk(existsSync(dir), 'the socket directory is removed after SIGTERM')
})

// ---------------------------------------------------------------------------------------------
// Content and secrets

const MARKER = `zebra-quartz-${randomBytes(3).toString('hex')}`
const PROMPT = `${MARKER} once upon a time`
const API_KEY = `sk-spanserve-${randomBytes(8).toString('hex')}`
const WRONG_KEY = `sk-wrong-${randomBytes(8).toString('hex')}`
const COLLECTOR_SECRET = `collector-secret-${randomBytes(4).toString('hex')}`

interface ContentRun {
  server: RunningServer
  stderr: () => string
  traceFile: string
  /** The generated completions (non-streamed, streamed, chat). */
  completions: string[]
}

async function runContentRequests(t: Test, extraArgs: string[]): Promise<ContentRun> {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-exposure-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const traceFile = join(dir, 'traces.jsonl')
  const server = await startServer({
    args: ['--trace-enable', '--trace-exporter', 'file', '--trace-file', traceFile, '--api-key', API_KEY, '--log-level', 'debug', ...extraArgs],
    env: { OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${COLLECTOR_SECRET}`, OTEL_BSP_SCHEDULE_DELAY: '200' },
  })
  t.teardown(() => server.stop())
  let stderr = ''
  server.proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
  const post = (path: string, body: object, key = API_KEY) =>
    fetch(server.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    })
  const completions: string[] = []

  // The key reaches the children neither through their command line nor their environment.
  for (const [role, pid] of Object.entries(server.childPids())) {
    const seen = readFileSync(`/proc/${pid}/environ`, 'utf8') + readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    t.notOk(seen.includes(API_KEY), `the API key is not in ${role}'s environment or command line`)
  }

  const whole = await post('/v1/completions', { model: 'default', prompt: PROMPT, max_tokens: 24, temperature: 0, ignore_eos: true })
  t.equal(whole.status, 200, 'completion answered')
  completions.push(((await whole.json()) as { choices: { text: string }[] }).choices[0]!.text)

  const streamed = await post('/v1/completions', { model: 'default', prompt: `${PROMPT} in the forest`, max_tokens: 24, temperature: 0, ignore_eos: true, stream: true })
  t.equal(streamed.status, 200, 'streamed completion answered')
  let text = ''
  for (const line of (await streamed.text()).split('\n')) {
    if (!line.startsWith('data: {')) continue
    text += (JSON.parse(line.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? ''
  }
  completions.push(text)

  const chat = await post('/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: PROMPT }], max_tokens: 24, temperature: 0, ignore_eos: true })
  t.equal(chat.status, 200, 'chat completion answered')
  completions.push(((await chat.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content)

  // Failures carry the same content: a wrong key, an invalid body, a prompt over the context.
  t.equal((await post('/v1/completions', { model: 'default', prompt: PROMPT, max_tokens: 4 }, WRONG_KEY)).status, 401, 'a wrong key is refused')
  t.equal((await post('/v1/completions', { model: 'default', prompt: PROMPT, max_tokens: -3 })).status, 400, 'an invalid body is refused')
  t.equal((await post('/v1/completions', { model: 'default', prompt: `${PROMPT} `.repeat(400), max_tokens: 4 })).status, 400, 'a prompt over the context is refused')

  t.equal(await server.stop(), 0, 'the server stopped cleanly (every process flushed its spans)')
  return { server, stderr: () => stderr, traceFile, completions }
}

/** The longest run of plain words in `text` (no characters JSON would escape), at most 40 chars. */
function distinctivePiece(text: string): string {
  const runs = text.match(/[A-Za-z0-9 ,.;:'!?-]+/g) ?? []
  const longest = runs.sort((a, b) => b.length - a.length)[0] ?? ''
  return longest.trim().slice(0, 40)
}

/** Every span in an OTLP JSON lines file, with its attributes as a plain object. */
function spansIn(file: string): { name: string; attributes: Record<string, unknown> }[] {
  const out: { name: string; attributes: Record<string, unknown> }[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    const req = JSON.parse(line) as { resourceSpans?: { scopeSpans?: { spans?: { name: string; attributes?: { key: string; value: Record<string, unknown> }[] }[] }[] }[] }
    for (const rs of req.resourceSpans ?? [])
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? []) {
          const attributes: Record<string, unknown> = {}
          for (const a of s.attributes ?? []) attributes[a.key] = Object.values(a.value)[0]
          out.push({ name: s.name, attributes })
        }
  }
  return out
}

t.test('prompts, completions, the API key and collector headers never appear in logs or spans by default', async (t) => {
  const run = await runContentRequests(t, [])
  const pieces = run.completions.map(distinctivePiece)
  t.ok(
    pieces.every((p) => p.length >= 20),
    `distinctive pieces of every completion: ${JSON.stringify(pieces)}`,
  )
  const logs = run.server.logs.map((l) => JSON.stringify(l)).join('\n')
  const spans = readFileSync(run.traceFile, 'utf8')
  t.ok(
    run.server.logs.some((l) => l.msg === 'request finished'),
    'the per-request log lines were written',
  )
  t.ok(
    spansIn(run.traceFile).some((s) => s.name === 'llm_request'),
    'the trace file holds the requests',
  )
  const secrets: [string, string][] = [
    ['the prompt marker', MARKER],
    ['the API key', API_KEY],
    ['the wrong API key a client sent', WRONG_KEY],
    ['the collector secret', COLLECTOR_SECRET],
    ...pieces.map((p, i): [string, string] => [`completion ${i} ("${p}")`, p]),
  ]
  for (const [what, secret] of secrets) {
    t.notOk(logs.includes(secret), `${what} is in no log line`)
    t.notOk(run.stderr().includes(secret), `${what} is not on stderr`)
    t.notOk(spans.includes(secret), `${what} is in no span`)
  }
  t.notOk(/gen_ai\.(prompt|completion)/.test(spans), 'no gen_ai.prompt or gen_ai.completion attribute')
})

t.test('with --trace-record-content the prompt and completion do appear in spans (the scan can find them)', async (t) => {
  const run = await runContentRequests(t, ['--trace-record-content'])
  const roots = spansIn(run.traceFile).filter((s) => s.name === 'llm_request')
  const prompts = roots.map((s) => s.attributes['gen_ai.prompt']).filter((v): v is string => typeof v === 'string')
  t.ok(
    prompts.some((p) => p === PROMPT),
    'gen_ai.prompt holds the prompt as sent',
  )
  t.ok(
    prompts.some((p) => p.includes(MARKER) && p.includes('"role":"user"')),
    'a chat request records its messages',
  )
  const completions = roots.map((s) => s.attributes['gen_ai.completion'])
  t.ok(completions.includes(run.completions[0]), 'gen_ai.completion holds the completion as answered')
  const raw = readFileSync(run.traceFile, 'utf8')
  t.ok(raw.includes(MARKER), 'the raw scan finds the marker')
  for (const piece of run.completions.map(distinctivePiece)) t.ok(raw.includes(piece), `the raw scan finds the completion piece "${piece}"`)
  // Opting content into spans changes nothing for logs and secrets.
  const logs = run.server.logs.map((l) => JSON.stringify(l)).join('\n')
  t.notOk(logs.includes(MARKER), 'the prompt is still in no log line')
  for (const secret of [API_KEY, WRONG_KEY, COLLECTOR_SECRET]) {
    t.notOk(logs.includes(secret) || readFileSync(run.traceFile, 'utf8').includes(secret), 'no secret in logs or spans')
  }
})

// An API key given as SPANSERVE_API_KEY (with the admin key) stays out of every child's environment
// and command line: test/security/key-file.test.ts, 'keys from the environment'.

// ---------------------------------------------------------------------------------------------
// Sampling

t.test("--trace-ignore-parent-sampling --trace-sample-rate 0: a caller's sampled traceparent records nothing in any process", async (t) => {
  const receiver = await startOtlpReceiver({ protocol: 'grpc' })
  t.teardown(() => receiver.close())
  const common = ['--trace-enable', '--otlp-traces-endpoint', receiver.endpoint, '--trace-sample-rate', '0']
  const [ignoring, following] = await Promise.all([startServer({ args: [...common, '--trace-ignore-parent-sampling'] }), startServer({ args: common })])
  t.teardown(() => ignoring.stop())
  t.teardown(() => following.stop())
  const pidsOf = (s: RunningServer) => new Set([s.proc.pid!, ...Object.values(s.childPids())])
  const ignoringPids = pidsOf(ignoring)
  const followingPids = pidsOf(following)

  const send = async (server: RunningServer, stream: boolean) => {
    const traceId = randomBytes(16).toString('hex')
    const res = await fetch(server.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: JSON.stringify({ model: 'default', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, stream }),
    })
    t.equal(res.status, 200)
    await res.text()
    return traceId
  }
  const ignoredTraces = [await send(ignoring, false), await send(ignoring, true)]
  const followedTraces = [await send(following, false), await send(following, true)]
  // Stopping flushes every process's spans: after it, whatever was recorded has arrived.
  t.equal(await ignoring.stop(), 0)
  t.equal(await following.stop(), 0)

  const fromIgnoring = receiver.spans.filter((s) => ignoringPids.has(s.resource['process.pid'] as number) || ignoredTraces.includes(s.traceId))
  t.same(
    fromIgnoring.map((s) => s.name),
    [],
    'with the flag: no span from any process (server, tokenizer, scheduler, worker)',
  )

  for (const traceId of followedTraces) {
    const mine = receiver.spans.filter((s) => s.traceId === traceId)
    const roles = new Set(mine.map((s) => s.resource['spanserve.process.role']))
    t.same([...roles].sort(), ['scheduler', 'server', 'tokenizer', 'worker'], "without the flag: the caller's sampled trace is recorded by every process")
    t.ok(
      mine.some((s) => s.name === 'llm_request'),
      'with its request root',
    )
    t.ok(
      mine.every((s) => followingPids.has(s.resource['process.pid'] as number)),
      'by the server that follows the caller',
    )
  }
})
