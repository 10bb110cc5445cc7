import t from 'tap'
import { spawnSync } from 'node:child_process'
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FIXTURE, FIXTURE_PATH } from './fixture.ts'
import { main } from '../../src/trace-tools/cli.ts'

const BIN = fileURLToPath(new URL('../../bin/spanserve.js', import.meta.url))

type Run = { status: number | null; stdout: string; stderr: string }

/** Runs the real bin, as `npx spanserve` would, without tap's loaders in the child. */
function bin(...args: string[]): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 20_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The bin's main in this process (what bin/spanserve.js calls with its argv): the same output and status, without a process start each. */
async function spanserve(...args: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const status = await main(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { status, stdout, stderr }
}

t.test('the bin is an executable node script', async (t) => {
  accessSync(BIN, constants.X_OK)
  t.match(readFileSync(BIN, 'utf8'), /^#!\/usr\/bin\/env node\n/)
})

t.test('trace show FILE lists the traces (through the real bin)', async (t) => {
  const r = bin('trace', 'show', FIXTURE_PATH)
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  const lines = r.stdout.trimEnd().split('\n')
  t.equal(lines.length, 1 + FIXTURE.traces)
  t.match(lines[1], new RegExp(`^${FIXTURE.traceId}  ${FIXTURE.rid} `))
})

t.test('trace show FILE --rid ID draws the waterfall', async (t) => {
  const r = await spanserve('trace', 'show', FIXTURE_PATH, '--rid', FIXTURE.rid, '--width', '20')
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, new RegExp(`^trace ${FIXTURE.traceId}  rid ${FIXTURE.rid}`))
  t.match(r.stdout, /\n {6}prefill_forward +\d+\.\d{3} ms {2,}█/)
  const byTrace = await spanserve('trace', 'show', FIXTURE_PATH, '--trace', FIXTURE.traceId.slice(0, 6))
  t.equal(byTrace.status, 0, byTrace.stderr)
  t.equal(byTrace.stdout.split('\n')[0], r.stdout.split('\n')[0], 'a unique trace id prefix selects the same trace')
})

t.test('trace perfetto FILE writes Chrome trace JSON to stdout or -o', async (t) => {
  const r = await spanserve('trace', 'perfetto', FIXTURE_PATH)
  t.equal(r.status, 0, r.stderr)
  const json = JSON.parse(r.stdout)
  t.equal(json.displayTimeUnit, 'ms')
  t.equal(json.traceEvents.filter((e: { ph: string }) => e.ph === 'X').length, FIXTURE.spans)

  const out = join(t.testdir({}), 'trace.json')
  const written = await spanserve('trace', 'perfetto', FIXTURE_PATH, '-o', out)
  t.equal(written.status, 0, written.stderr)
  t.equal(written.stdout, '')
  t.match(written.stderr, /wrote .*trace\.json: 94 spans in 4 trace\(s\); open it at https:\/\/ui\.perfetto\.dev/)
  t.equal(readFileSync(out, 'utf8'), r.stdout, 'same output either way')

  const one = JSON.parse((await spanserve('trace', 'perfetto', FIXTURE_PATH, '--rid', FIXTURE.rid)).stdout)
  const rids = new Set(one.traceEvents.filter((e: { ph: string }) => e.ph === 'X').map((e: { args: { rid: string } }) => e.args.rid))
  t.same([...rids], [FIXTURE.rid], '--rid narrows the conversion to one request')
})

t.test('help', async (t) => {
  for (const args of [['--help'], ['trace', '--help'], ['trace', 'show', '--help']]) {
    const r = await spanserve(...args)
    t.equal(r.status, 0, args.join(' '))
    t.match(r.stdout, /^Usage:\n {2}spanserve trace show FILE/)
  }
})

t.test('bad arguments: usage on stderr, exit status 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /missing command/],
    [['serve'], /unknown command 'serve'/],
    [['trace'], /missing subcommand/],
    [['trace', 'convert', FIXTURE_PATH], /unknown subcommand 'trace convert'/],
    [['trace', 'show'], /missing FILE/],
    [['trace', 'show', FIXTURE_PATH, '--rid', 'a', '--trace', 'b'], /--rid or --trace, not both/],
    [['trace', 'show', FIXTURE_PATH, '--width', 'wide'], /--width must be a whole number from 10 to 400/],
    [['trace', 'show', FIXTURE_PATH, '--width', '3'], /--width must be/],
    [['trace', 'show', FIXTURE_PATH, '--bogus'], /Unknown option '--bogus'/],
    [['trace', 'show', FIXTURE_PATH, '--rid'], /--rid/],
    [['trace', 'perfetto', FIXTURE_PATH, '--width', '20'], /Unknown option '--width'/],
  ]
  for (const [args, message] of cases) {
    const r = await spanserve(...args)
    t.equal(r.status, 2, `spanserve ${args.join(' ')}`)
    t.match(r.stderr, message)
    t.match(r.stderr, /Usage:/)
    t.equal(r.stdout, '')
  }
})

t.test('unreadable input: a clear message, exit status 1', async (t) => {
  const dir = t.testdir({ 'notes.txt': 'not a trace\n', 'empty.jsonl': '' })
  const cases: [string[], RegExp][] = [
    [['trace', 'show', join(dir, 'missing.jsonl')], /^spanserve: cannot read .*missing\.jsonl: no such file\n$/],
    [['trace', 'perfetto', dir], /^spanserve: cannot read .*: is a directory\n$/],
    [['trace', 'show', join(dir, 'notes.txt')], /^spanserve: .*notes\.txt is not OTLP JSON/],
    [['trace', 'show', join(dir, 'empty.jsonl')], /^spanserve: no spans found in .*empty\.jsonl\n$/],
    [['trace', 'show', FIXTURE_PATH, '--rid', 'nope'], /^spanserve: no request with rid nope in /],
    [['trace', 'show', FIXTURE_PATH, '--trace', 'ffff'], /^spanserve: no trace ffff in /],
    [['trace', 'perfetto', FIXTURE_PATH, '-o', join(dir, 'no', 'such', 'dir.json')], /^spanserve: cannot write /],
  ]
  for (const [args, message] of cases) {
    const r = await spanserve(...args)
    t.equal(r.status, 1, `spanserve ${args.join(' ')}`)
    t.match(r.stderr, message)
    t.notMatch(r.stderr, /Usage:|\n {4}at /, 'no usage text, no stack')
  }
})

t.test('a file still being written: the incomplete last line is skipped with a warning', async (t) => {
  const file = join(t.testdir({}), 'live.jsonl')
  const text = readFileSync(FIXTURE_PATH, 'utf8')
  writeFileSync(file, text + '{"resourceSpans":[{"resource":{"attr')
  const r = await spanserve('trace', 'show', file)
  t.equal(r.status, 0)
  t.match(r.stderr, /^spanserve: warning: .*live\.jsonl: skipped incomplete last line 7 \(a process may still be writing\)\n$/)
  t.equal(r.stdout.trimEnd().split('\n').length, 1 + FIXTURE.traces)
})

t.test('output piped into a closed reader ends quietly', async (t) => {
  const r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" trace perfetto "${FIXTURE_PATH}" | head -c 10`], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  })
  t.equal(r.stdout, '{"traceEve')
  t.equal(r.stderr, '')
})

/** A real prefill/decode run (scripts/record-pd-trace.ts): the router's, the prefill instance's and the decode instance's files. */
const PD_FILES = ['router', 'prefill', 'decode'].map((n) => fileURLToPath(new URL(`./fixtures/pd/${n}.jsonl`, import.meta.url)))

t.test('several files read as one: a trace across a router and its prefill and decode instances', async (t) => {
  const list = await spanserve('trace', 'show', ...PD_FILES)
  t.equal(list.status, 0, list.stderr)
  const rows = list.stdout.trimEnd().split('\n').slice(1)
  t.equal(rows.length, 2, 'two requests, one trace each (not one per file)')
  const traceId = rows[0]!.slice(0, 32)
  const one = await spanserve('trace', 'show', PD_FILES[2]!, '--trace', traceId)
  const all = await spanserve('trace', 'show', ...PD_FILES, '--trace', traceId, '--width', '20')
  t.equal(all.status, 0, all.stderr)
  t.match(all.stdout, /\n {4}router_request /, "the router's span")
  t.match(all.stdout, /\n {6}Bootstrap Room 0x[0-9a-f]+ /, 'the bootstrap room under it')
  t.equal(all.stdout.match(/\n {10}llm_request /g)?.length, 2, "both instances' request trees under the room")
  for (const slice of ['prefill_bootstrap', 'prefill_transfer_kv_cache', 'decode_prepare', 'decode_waiting', 'decode_bootstrap', 'decode_transferred']) {
    t.match(all.stdout, new RegExp(`\\n {14}${slice} `), slice)
  }
  t.notMatch(one.stdout, /prefill_transfer_kv_cache/, 'the decode file alone lacks the prefill side')

  const perfetto = JSON.parse((await spanserve('trace', 'perfetto', ...PD_FILES, '--trace', traceId)).stdout) as { traceEvents: { ph: string; name: string; args: { name?: string } }[] }
  const processes = perfetto.traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => e.args.name)
  for (const side of ['prefill', 'decode']) {
    for (const role of ['Server', 'Tokenizer', 'Scheduler', 'Worker'])
      t.ok(
        processes.some((p) => p?.startsWith(`${role} (${side})`)),
        `Perfetto: ${role} (${side})`,
      )
  }
  t.ok(processes.includes('Router'), 'Perfetto: the router')
})
