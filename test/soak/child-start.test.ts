/**
 * A child process that cannot start stops the launch fast, with its reason: `npm start` exits 1
 * well within --startup-timeout, its log names what is wrong, no port is opened and no child is
 * left behind.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ensureModel } from '../../src/model/build.ts'
import { ROOT, TEST_CACHE_DIR } from '../../harness/server.ts'
import { alive } from '../helpers/processes.ts'

const STARTUP_TIMEOUT_S = 40

/** The embedded default model, built once into the tests' shared cache. */
const source = await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR })
const SIDE_FILES = ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']

function modelCopy(t: Test, onnx: (path: string) => void, config?: (cfg: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'spanserve-childstart-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of SIDE_FILES) copyFileSync(join(source, f), join(dir, f))
  if (config) {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>
    config(cfg)
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2))
  }
  onnx(join(dir, 'model.onnx'))
  return dir
}

interface Launch {
  code: number | null
  ms: number
  logs: Record<string, unknown>[]
  stdout: string
  stderr: string
}

/** `npm start` on a free port; its children, known from the 'process ready' lines, are ended by pid if left. */
function launch(t: Test, args: string[]): Promise<Launch> {
  return new Promise((resolve) => {
    const started = Date.now()
    const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/server/main.ts'), '--port', '0', '--startup-timeout', String(STARTUP_TIMEOUT_S), ...args], {
      cwd: ROOT,
      env: { ...process.env, SPANSERVE_CACHE_DIR: TEST_CACHE_DIR, SPANSERVE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
    // A bound on the whole launch: past it, end the server (the test then fails on the exit code).
    const guard = setTimeout(() => proc.kill('SIGKILL'), (STARTUP_TIMEOUT_S + 20) * 1000)
    proc.on('exit', (code) => {
      clearTimeout(guard)
      const logs = stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>
          } catch {
            return { msg: l }
          }
        })
      resolve({ code, ms: Date.now() - started, logs, stdout, stderr })
    })
    t.teardown(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    })
  })
}

async function checkFailedLaunch(t: Test, r: Launch, reason: RegExp): Promise<void> {
  t.equal(r.code, 1, 'exit code 1')
  t.ok(r.ms < STARTUP_TIMEOUT_S * 1000, `failed fast: ${r.ms} ms, within the ${STARTUP_TIMEOUT_S} s startup timeout`)
  const fatal = r.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('start-up failed: worker-0-0: '))
  t.ok(fatal, "the server logged 'start-up failed: worker-0-0: …'")
  t.match(String(fatal?.msg), reason, `the reason names the problem: ${String(fatal?.msg).slice(0, 300)}`)
  t.equal(fatal?.level, 60, 'at fatal level')
  t.ok(
    r.logs.some((l) => l.msg === 'process failed' && l.role === 'worker'),
    "the worker itself logged 'process failed'",
  )
  t.notOk(
    r.logs.some((l) => l.msg === 'spanserve listening'),
    'no port was opened',
  )
  // Children that did get ready must not outlive the failed launch.
  const pids = r.logs.filter((l) => l.msg === 'process ready').map((l) => l.child_pid as number)
  await new Promise((res) => setTimeout(res, 1000))
  const left = pids.filter(alive)
  for (const pid of left) process.kill(pid, 'SIGKILL')
  t.same(left, [], 'no child process is left behind')
}

t.test('model.onnx of garbage bytes: the worker cannot load it, the launch fails fast naming the file', async (t) => {
  const dir = modelCopy(t, (path) => writeFileSync(path, randomBytes(64 * 1024)))
  const r = await launch(t, ['--model', dir])
  await checkFailedLaunch(t, r, /model\.onnx/)
})

t.test('config.json with more layers than the ONNX graph: the launch fails naming the missing input', async (t) => {
  let layers = 0
  const dir = modelCopy(
    t,
    (path) => symlinkSync(join(source, 'model.onnx'), path),
    (cfg) => {
      layers = cfg.num_hidden_layers as number
      cfg.num_hidden_layers = layers + 1
    },
  )
  const r = await launch(t, ['--model', dir])
  // Layers 0..layers-1 exist in the graph; the first one config.json adds does not.
  await checkFailedLaunch(t, r, new RegExp(`the graph has no input "past_key_values\\.${layers}\\.key"`))
})
