/**
 * npm run bench: every configuration on the same model(s), machine and settings in one invocation;
 * prints one table, the ratios and the targets' verdicts; writes bench/results/<date>.json and
 * regenerates docs/benchmarks.md and docs/benchmarks-throughput.svg. `npm run bench -- --help`.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { ensureModel } from '../src/model/build.ts'
import { readModelInfo } from '../src/model/load.ts'
import { ROOT } from '../harness/server.ts'
import { killTracked } from './child-lines.ts'
import { LimitRunner, limitLevel } from './configs/limit.ts'
import { startSpanserve } from './configs/spanserve.ts'
import { startTransformersJs, transformersJsUnavailable } from './configs/transformers-js.ts'
import { llamaCppUnavailable, startLlamaCpp } from './configs/llama-cpp.ts'
import { writeDocs } from './docs.ts'
import { prepareHttp, WARMUP_CONCURRENCY, type HttpPlan } from './measure-http.ts'
import { compareGreedy } from './greedy-check.ts'
import { CONFIG_LABELS, CONFIG_QUANTIZATION, parseOptions, type ConfigName } from './options.ts'
import { delta, snapshot } from './proc-cpu.ts'
import { summariseProfiles } from './profile.ts'
import { makePrompts } from './prompts.ts'
import { consoleReport } from './report.ts'
import type { BenchResult, ConfigResult, MatchResult } from './results.ts'
import type { LevelResult } from './stats.ts'
import { judge } from './targets.ts'
import { runTracingMicro } from './tracing-micro.ts'
import { runSamplerMicro } from './sampler-micro.ts'
import { runFeatures } from './features.ts'

const opts = (() => {
  try {
    return parseOptions(process.argv.slice(2))
  } catch (err) {
    // A usage error: its message says what is wrong; a stack trace would only bury it.
    process.stderr.write(`bench: ${(err as Error).message} (npm run bench -- --help)\n`)
    process.exit(2)
  }
})()
if (opts === null) process.exit(0)
if (opts.docsFrom) {
  const file = resolve(opts.docsFrom)
  const saved = JSON.parse(readFileSync(file, 'utf8')) as BenchResult
  saved.verdicts = judge(saved)
  process.stderr.write(`docs from ${file}: ${writeDocs(saved, file).join(', ')}\n`)
  process.exit(0)
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killTracked()
    process.exit(130)
  })
}

if (opts.isolation) {
  await (await import('./isolation.ts')).runIsolation(opts.isolationParts)
  process.exit(0)
}

if (opts.router) {
  await (await import('./router.ts')).runRouter(opts.outDir)
  process.exit(0)
}

if (opts.features) {
  await runFeatures({ models: opts.models, base: opts.base ? resolve(opts.base) : null, out: opts.outDir, parts: opts.featureParts })
  process.exit(0)
}

const started = performance.now()
const say = (line: string): void => void process.stderr.write(`${line}\n`)
const progress = (label: string) => (l: LevelResult) =>
  say(
    `  ${label} c=${l.concurrency}: ${l.tokensPerSec.toFixed(0)} tok/s, TTFT p50 ${l.ttftP50.toFixed(1)} ms, ITL p50 ${l.itlP50.toFixed(2)} ms (${l.requests} requests, ${(l.wallMs / 1000).toFixed(1)} s)`,
  )
const requests = (n: number): number => Math.max(opts.rounds * n, opts.minRequests)
const pkgVersion = (name: string): string | null => {
  try {
    return (createRequire(join(ROOT, 'package.json'))(`${name}/package.json`) as { version: string }).version
  } catch {
    return null
  }
}

const CHECK_PROMPTS = 4
const configs: ConfigResult[] = []
const matches: MatchResult[] = []
const models: BenchResult['models'] = []
const tjsMissing = opts.configs.includes('tjs') ? await transformersJsUnavailable() : null
const isLlamaCpp = (c: ConfigName): c is 'llamacpp' | 'llamacpp-q8' | 'llamacpp-q4' => c.startsWith('llamacpp')
const llamaCppMissing = opts.configs.some(isLlamaCpp) ? await llamaCppUnavailable() : null
const maxBatchSize = Math.max(64, ...opts.concurrencies)
const extraArgs = opts.intraOpThreads > 0 ? ['--intra-op-threads', String(opts.intraOpThreads)] : []
/** Server flags that make a configuration. */
const CONFIG_FLAGS: Partial<Record<ConfigName, string[]>> = {
  dp2: ['--dp-size', '2'],
  lockstep: ['--disable-overlap-schedule'],
  spin: ['--intra-op-spinning'],
  steps4: ['--num-continuous-decode-steps', '4'],
  'off-int8': ['--quantization', 'int8'],
  'off-int4': ['--quantization', 'int4'],
  fr: ['--trace-flight-recorder', '30'],
}
const GGUF_TYPE = { llamacpp: 'none', 'llamacpp-q8': 'q8_0', 'llamacpp-q4': 'q4_0' } as const
/** Configurations driven in this process (LimitRunner), not over HTTP. */
const IN_PROCESS: readonly ConfigName[] = ['limit', 'baselimit', 'limitspin', 'limit-int8', 'limit-int4']

say('tracing module microbenchmark (bench/tracing-slice.ts)')
const tracingMicro = await runTracingMicro()
say('sampler microbenchmark (bench/sampler-micro.ts)')
const samplerMicro = runSamplerMicro([32000, 151936], 40)

/** A configuration that is up and warmed: it runs one level when asked. */
interface Target {
  config: ConfigName
  level(n: number, total: number, from: number): Promise<LevelResult>
  /** The configuration's processes by role, for CPU accounting per level. */
  pids(): Record<string, number>
  stop(): Promise<Partial<ConfigResult>>
}

for (const preset of opts.models) {
  const modelDir = await ensureModel({ preset, log: say })
  const info = readModelInfo(modelDir)
  let params: number | null = null
  try {
    params = (JSON.parse(readFileSync(join(modelDir, 'spanserve_build.json'), 'utf8')) as { params: number }).params
  } catch {
    /* not an embedded build */
  }
  models.push({ preset, params, layers: info.numLayers, hidden: info.hiddenSize, kvHeads: info.numKvHeads, headDim: info.headDim })
  const { prompts, tokenizer } = makePrompts(modelDir, opts.promptTokens, 16)
  const checkPrompts = prompts.slice(0, CHECK_PROMPTS)
  const plan: HttpPlan = { prompts, checkPrompts, maxTokens: opts.maxTokens, warmupRequests: opts.warmup }
  say(`model ${preset}: ${modelDir} (${params === null ? '?' : (params / 1e6).toFixed(1)}M params)`)

  // Every configuration is started and warmed up first; the levels then run interleaved (each level
  // on every configuration back to back), so a burst of load from elsewhere on a shared machine
  // hits the configurations of one level alike rather than one configuration's whole run.
  const targets: Target[] = []
  const texts = new Map<ConfigName, string[]>()
  // The limit always runs its check prompts: its greedy tokens are the reference.
  const threads = { intraOp: opts.intraOpThreads, spinning: false, memArena: false }
  const limit = await LimitRunner.open(modelDir, threads)
  const runs = preset === 'large' ? opts.largeConfigs : opts.configs
  const baseLimit = runs.includes('baselimit') ? await LimitRunner.open(modelDir, threads, { root: opts.base! }) : null
  const spinLimit = runs.includes('limitspin') ? await LimitRunner.open(modelDir, { ...threads, spinning: true }) : null
  const int8Limit = runs.includes('limit-int8') ? await LimitRunner.open(modelDir, threads, { quantization: 'int8' }) : null
  const int4Limit = runs.includes('limit-int4') ? await LimitRunner.open(modelDir, threads, { quantization: 'int4' }) : null
  await limit.round(prompts.slice(0, 4), Math.min(opts.maxTokens, 16))
  const reference: string[] = []
  for (const p of checkPrompts) reference.push(tokenizer.decode((await limit.round([p], opts.maxTokens)).tokens[0]!, { skip_special_tokens: true }))
  if (runs.includes('limit')) {
    targets.push({
      config: 'limit',
      level: (n, total, from) => limitLevel(limit, prompts, opts.maxTokens, n, Math.ceil(total / n), from),
      pids: () => ({ bench: process.pid }),
      stop: async () => ({}),
    })
  }
  for (const [config, other] of [
    ['baselimit', baseLimit],
    ['limitspin', spinLimit],
    ['limit-int8', int8Limit],
    ['limit-int4', int4Limit],
  ] as const) {
    if (!other) continue
    await other.round(prompts.slice(0, 4), Math.min(opts.maxTokens, 16))
    // A quantized limit's outputs are the reference for spanserve's configurations of its quantization.
    if (CONFIG_QUANTIZATION[config]) {
      const own: string[] = []
      for (const p of checkPrompts) own.push(tokenizer.decode((await other.round([p], opts.maxTokens)).tokens[0]!, { skip_special_tokens: true }))
      texts.set(config, own)
    }
    targets.push({
      config,
      level: (n, total, from) => limitLevel(other, prompts, opts.maxTokens, n, Math.ceil(total / n), from),
      pids: () => ({ bench: process.pid }),
      stop: async () => ({}),
    })
  }
  try {
    for (const config of runs.filter((c) => !IN_PROCESS.includes(c))) {
      say(`starting ${CONFIG_LABELS[config]} [${preset}]`)
      if (config === 'tjs' && tjsMissing) {
        say(`  left out: ${tjsMissing}`)
        configs.push({ config, model: preset, levels: [], skipped: tjsMissing })
        continue
      }
      if (isLlamaCpp(config) && llamaCppMissing) {
        say(`  left out: ${llamaCppMissing}`)
        configs.push({ config, model: preset, levels: [], skipped: llamaCppMissing })
        continue
      }
      const server =
        config === 'tjs'
          ? await startTransformersJs(modelDir)
          : isLlamaCpp(config)
            ? await startLlamaCpp({
                preset,
                quantization: GGUF_TYPE[config],
                parallel: Math.max(...opts.concurrencies),
                ctxPerSlot: opts.promptTokens + opts.maxTokens,
                threads: opts.intraOpThreads,
                log: say,
              })
            : await startSpanserve({
                modelDir,
                traceLevel: config === 'on' || config === 'onlive' || config === 'baseon' ? 3 : config === 'on2' || config === 'fr' ? 2 : null,
                maxBatchSize,
                extraArgs: [...extraArgs, ...(CONFIG_FLAGS[config] ?? [])],
                root: config === 'base' || config === 'baseon' ? opts.base! : undefined,
                sinkDecode: config === 'onlive' ? 'live' : opts.sinkDecode,
              })
      const { client, checkTexts } = await prepareHttp(server.url, plan)
      texts.set(config, checkTexts)
      // Another model would make llama.cpp's figures meaningless: it is measured only on the limit's greedy tokens.
      // Its quantized files cannot match them token for token; greedy-check.ts reports how far they follow.
      const differs = config === 'llamacpp' ? checkTexts.findIndex((t, k) => t !== reference[k]) : -1
      if (differs >= 0) {
        const why = `its greedy output differs from the limit's on check prompt ${differs}: not the same model, not measured`
        say(`  ${CONFIG_LABELS[config]} [${preset}]: ${why.toUpperCase()}`)
        configs.push({ config, model: preset, levels: [], failed: why })
        process.exitCode = 1
        client.close()
        await server.stop()
        continue
      }
      targets.push({
        config,
        level: (n, total, from) => client.level(prompts, opts.maxTokens, n, total, from),
        pids: () => server.pids(),
        stop: async () => {
          client.close()
          return (await server.stop()) ?? {}
        },
      })
    }
    const levels = new Map<ConfigName, LevelResult[]>(targets.map((t) => [t.config, []]))
    // A configuration whose level fails (a request answered with an error) runs no further levels;
    // the others go on, so that one failure does not cost the whole run.
    const failures = new Map<ConfigName, string>()
    let from = 0
    for (const [li, n] of opts.concurrencies.entries()) {
      const total = requests(n)
      const runs = new Map<ConfigName, LevelResult[]>(targets.map((t) => [t.config, []]))
      // Each repeat runs every configuration once, in an order rotated from repeat to repeat and level
      // to level, so that no configuration always runs first; repeats use the same prompts. Each
      // rotation runs forwards, then backwards, so that no configuration always follows the same
      // one: what a server does once its level is over (its last export, its idle collection 5 s
      // later, src/process/idle-collect.ts) lands in another configuration's level, and a rotation
      // alone always put the same neighbour's into the same configuration's. (Three configurations
      // go through all six orders in six repeats; two alternate.)
      for (let rep = 0; rep < opts.repeats; rep++) {
        const configs = targets.length
        const offset = li + Math.floor(rep / 2)
        for (let k = 0; k < configs; k++) {
          const t = targets[(offset + (rep % 2 === 0 ? k : configs - 1 - k)) % configs]!
          if (failures.has(t.config)) continue
          const pids = t.pids()
          const before = snapshot(pids)
          let r: LevelResult
          try {
            r = await t.level(n, total, from)
          } catch (err) {
            const why = `concurrency ${n} failed: ${(err as Error).message}`
            failures.set(t.config, why)
            say(`  ${t.config} ${why}; its remaining levels are left out`)
            continue
          }
          r.cpuMs = delta(before, snapshot(pids))
          progress(t.config)(r)
          runs.get(t.config)!.push(r)
        }
      }
      for (const t of targets) {
        const rs = runs.get(t.config)!
        if (failures.has(t.config)) continue
        // The level's figures are its median repeat's (by tok/s); every repeat's tok/s is kept, in order.
        const chosen = [...rs].sort((a, b) => a.tokensPerSec - b.tokensPerSec)[Math.floor((rs.length - 1) / 2)]!
        if (rs.length > 1) {
          chosen.repeatsTokS = rs.map((r) => r.tokensPerSec)
          chosen.repeatsTtftP50 = rs.map((r) => r.ttftP50)
          if (rs.every((r) => r.prefillP50 !== undefined)) chosen.repeatsPrefillP50 = rs.map((r) => r.prefillP50!)
          // CPU over all repeats together: steadier than one repeat's on a shared machine.
          const cpuMs: Record<string, number> = {}
          for (const r of rs) for (const [k, ms] of Object.entries(r.cpuMs ?? {})) cpuMs[k] = (cpuMs[k] ?? 0) + ms
          chosen.cpuMs = cpuMs
          chosen.cpuTokens = rs.reduce((a, r) => a + (r.tokensPerSec * r.wallMs) / 1000, 0)
          chosen.cpuWallMs = rs.reduce((a, r) => a + r.wallMs, 0)
        }
        levels.get(t.config)!.push(chosen)
      }
      from += total
    }
    for (const t of targets) configs.push({ config: t.config, model: preset, levels: levels.get(t.config)!, failed: failures.get(t.config) })
  } finally {
    for (const t of targets) {
      const extra = await t.stop()
      const c = configs.find((x) => x.config === t.config && x.model === preset)
      if (c && extra.spans !== undefined) {
        Object.assign(c, extra)
        say(`  OTLP receiver counted ${extra.spans} spans`)
      }
    }
    for (const l of [limit, baseLimit, spinLimit, int8Limit, int4Limit]) await l?.close()
  }
  const match = compareGreedy(preset, reference, texts)
  matches.push(match)
  for (const a of match.agreement ?? [])
    say(`  ${a.config} against ${a.against} [${preset}]: identical on ${a.identical} of ${a.prompts} check prompts, common prefix ${(100 * a.prefixShare).toFixed(0)}% of ${a.against}'s text`)
}

let profile: BenchResult['profile'] = null
let profileOn: BenchResult['profileOn'] = null
if (opts.profile && opts.configs.includes('off')) {
  const preset = opts.models[0]!
  const modelDir = await ensureModel({ preset })
  const { prompts } = makePrompts(modelDir, opts.promptTokens, 16)
  for (const traceLevel of [null, ...(opts.configs.includes('on') ? [3 as const] : [])]) {
    const dir = mkdtempSync(join(tmpdir(), 'spanserve-bench-prof-'))
    say(`profiling spanserve, tracing ${traceLevel === null ? 'off' : `on (level ${traceLevel})`}, concurrency 16 [${preset}] into ${dir}`)
    const server = await startSpanserve({ modelDir, traceLevel, maxBatchSize, extraArgs, cpuProfDir: dir, sinkDecode: opts.sinkDecode })
    try {
      const { client } = await prepareHttp(server.url, { prompts, checkPrompts: [], maxTokens: opts.maxTokens, warmupRequests: opts.warmup })
      server.startProfiling()
      progress('profiled')(await client.level(prompts, opts.maxTokens, 16, 64))
      client.close()
    } finally {
      await server.stop()
    }
    if (traceLevel === null) profile = summariseProfiles(dir)
    else profileOn = summariseProfiles(dir)
    rmSync(dir, { recursive: true, force: true })
  }
}

let tpStep: BenchResult['tpStep'] = null
if (opts.tpStep) {
  say('tensor-parallel decode step (bench/tp-step.ts)')
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/tp-step.ts'), '--preset', opts.models[0]!], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  })
  tpStep = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as NonNullable<BenchResult['tpStep']>[number])
  for (const r of tpStep) say(`  ${r.config} B=${r.batch}: step ${r.stepMs} ms, all-reduce ${r.allReduceMs} ms`)
}

/** The git revision of a checkout: its HEAD, or the .git-revision file of an exported tree (git archive). */
function revisionOf(dir: string): string | null {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    try {
      return readFileSync(join(dir, '.git-revision'), 'utf8').trim()
    } catch {
      return null
    }
  }
}

const cpu = cpus()
const result: BenchResult = {
  date: new Date().toISOString(),
  durationS: (performance.now() - started) / 1000,
  machine: {
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    onnxruntime: pkgVersion('onnxruntime-node') ?? 'unknown',
    transformersJs: pkgVersion('@huggingface/transformers'),
  },
  settings: {
    promptTokens: opts.promptTokens,
    maxTokens: opts.maxTokens,
    concurrencies: opts.concurrencies,
    rounds: opts.rounds,
    minRequests: opts.minRequests,
    warmup: opts.warmup,
    warmupConcurrency: WARMUP_CONCURRENCY,
    repeats: opts.repeats,
    intraOpThreads: opts.intraOpThreads,
  },
  models,
  configs,
  matches,
  tracingMicro,
  samplerMicro,
  verdicts: [],
  profile,
  profileOn,
  tpStep,
  sinkDecode: opts.sinkDecode,
  base: opts.base,
  baseRevision: opts.base ? revisionOf(opts.base) : null,
  args: process.argv.slice(2),
}
result.verdicts = judge(result)

process.stdout.write(`${consoleReport(result)}\n`)
const outDir = resolve(ROOT, opts.outDir)
mkdirSync(outDir, { recursive: true })
const file = join(outDir, `${result.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`)
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
say(`\nresults: ${file}`)
if (opts.docs) say(`docs: ${writeDocs(result, file).join(', ')}`)
say(`bench took ${result.durationS.toFixed(0)} s`)
