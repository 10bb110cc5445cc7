/**
 * Regenerates the measured parts of docs/benchmarks.md, and docs/benchmarks-throughput.svg, from one
 * run's results. The page's prose is written in the page; only its
 * `<!-- bench:begin NAME -->` … `<!-- bench:end NAME -->` blocks come from here (bench/doc-blocks.ts),
 * so every figure in them is that run's. A section the run did not measure says so in its block.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from '../harness/server.ts'
import { fillBlocks } from './doc-blocks.ts'
import { CONFIG_LABELS, type ConfigName } from './options.ts'
import type { ProcessProfile } from './profile.ts'
import { COLUMNS, cpuRows, markdownTable, tableRows } from './report.ts'
import type { BenchResult } from './results.ts'
import { samplerMicroTable } from './sampler-micro.ts'
import { throughputSvg } from './svg.ts'
import { levelRatio, verdictWord } from './targets.ts'
import type { LevelResult } from './stats.ts'

const MiB = 2 ** 20
const NOT_MEASURED = 'Not measured in this run.'

export function writeDocs(result: BenchResult, resultsFile: string): string[] {
  const svgPath = join(ROOT, 'docs/benchmarks-throughput.svg')
  const mdPath = join(ROOT, 'docs/benchmarks.md')
  const page = fillBlocks(readFileSync(mdPath, 'utf8'), blocks(result, resultsFile))
  writeFileSync(
    svgPath,
    throughputSvg(
      result.configs,
      result.models.map((m) => m.preset),
    ),
  )
  writeFileSync(mdPath, page)
  return [relative(ROOT, mdPath), relative(ROOT, svgPath)]
}

/** Each generated block of the page, by the name its markers carry. */
function blocks(result: BenchResult, resultsFile: string): Record<string, string> {
  const profile = (prof: readonly ProcessProfile[] | null | undefined): string => (prof ? profileTables(prof) : NOT_MEASURED)
  return {
    run: runLine(result, resultsFile),
    measured: measured(result),
    throughput: throughput(result),
    targets: ['| target | verdict | measured |', '| --- | --- | --- |', ...result.verdicts.map((v) => `| ${v.target} | ${verdictWord(v)} | ${v.measured} |`)].join('\n'),
    'before-after': beforeAfter(result),
    'tracing-overhead': tracingOverhead(result),
    'continuous-decode-steps': continuousDecodeSteps(result),
    'data-parallel': dataParallel(result),
    'tensor-parallel': tensorParallel(result),
    'sampler-micro': result.samplerMicro?.length ? samplerMicroTable(result.samplerMicro) : NOT_MEASURED,
    'tracing-micro': result.tracingMicro ? ['| case | µs |', '| --- | ---: |', ...result.tracingMicro.rows.map((r) => `| ${r.case} | ${r.us.toFixed(3)} |`)].join('\n') : NOT_MEASURED,
    'profile-off': profile(result.profile),
    'profile-on': profile(result.profileOn),
    kv: kvSection(result),
  }
}

function runLine(result: BenchResult, resultsFile: string): string {
  const m = result.machine
  return (
    `One run of \`npm run bench${result.args?.length ? ` -- ${result.args.join(' ')}` : ''}\` on ${result.date.slice(0, 10)}, ${Math.round(result.durationS)} s in all: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, ` +
    `Node ${m.node}, onnxruntime-node ${m.onnxruntime}${m.transformersJs ? `, @huggingface/transformers ${m.transformersJs}` : ''}, CPU execution provider. ` +
    `The machine is shared and noisy: compare the ratios within this run, not figures across runs. Raw figures: \`${relative(ROOT, resultsFile)}\`.`
  )
}

/** What each configuration is, for the configurations this run has. */
const CONFIG_DESCRIPTIONS: Record<ConfigName, string> = {
  limit:
    "the worker's own `ModelRunner` (src/worker/runner.ts) on an ONNX Runtime session (src/worker/session.ts) in the bench process: N prompts prefilled one after another, then decoded together, one session run per step. No HTTP, ZeroMQ or scheduler: what the hardware and the runner give.",
  limitspin: "the limit with ONNX Runtime's intra-op threads spinning while they wait for work (ONNX Runtime's own default; spanserve and the limit turn it off).",
  off: "the real server (`src/server/main.ts` and its tokenizer, scheduler and worker processes), streaming SSE from `/v1/completions`, with its defaults: the overlap schedule, ONNX Runtime's threads not spinning.",
  lockstep: "spanserve, tracing off, `--disable-overlap-schedule`: the scheduler sends a step only once the last one's tokens are back (what it always did before 2026-11-22).",
  steps4:
    'spanserve, tracing off, `--num-continuous-decode-steps 4`: the worker runs up to 4 decode steps per message from the scheduler, and their tokens travel back together (see "Continuous decode steps").',
  spin: "spanserve, tracing off, `--intra-op-spinning`: ONNX Runtime's threads spin while they wait (ONNX Runtime's default, and spanserve's before 2026-11-22).",
  baselimit: 'the limit driven by the `ModelRunner` of another checkout (`--base DIR`, here the revision named under "Before and after"): the before of a before/after, in the same run.',
  base: 'spanserve, tracing off, served from that other checkout (`--base DIR`).',
  baseon: "that other checkout's spanserve with tracing on at level 3, as `on` below.",
  on: 'the same with `--trace-enable --trace-level 3 --trace-sample-rate 1` (level 3: a span per request per decode step), every span exported over OTLP gRPC to a live receiver in another process (bench/otlp-sink.ts). The receiver takes each export\'s bytes and counts its spans only after the server has stopped: in a deployment the collector decodes on other cores or another host, so its decoding is not charged to the server here (see "Tracing overhead").',
  onlive: 'tracing on at level 3 as above, but the receiver decodes every export in full as it arrives, on the same two cores: how the bench measured tracing before 2026-11-22.',
  fr: 'tracing on at `--trace-level 2` with `--trace-flight-recorder 30`: level-3 detail of the last 30 s held in memory in every process, deferred receiver.',
  on2: 'tracing on at `--trace-level 2`, the default level (decode steps folded into one `decode_loop` slice per request), deferred receiver.',
  dp2: 'spanserve, tracing off, `--dp-size 2`: two scheduler + worker pairs, requests dispatched between them.',
  tjs: '`@huggingface/transformers` loading the same directory from disk (no remote models) behind a minimal node:http SSE handler (bench/transformers-js-server.ts), one `model.generate()` per request: it has no batching across requests.',
  llamacpp:
    "llama.cpp as node-llama-cpp ships it prebuilt, serving a GGUF F32 of the same weights (bench/gguf/) behind a minimal node:http SSE handler (bench/llama-cpp-server.ts): one context with a slot per request of the highest concurrency, every slot's pending tokens decoded together each step (llama-server's `-np N -cb`), threads the fastest of 1..cores for one-token steps and for larger batches (`-t`, `-tb`) measured at its start, flash attention off, F32 KV cache; its greedy outputs must equal the limit's or it is not measured (see \"llama.cpp\").",
  'llamacpp-q8':
    "the same llama.cpp on a GGUF Q8_0 of the same weights, as llama-quantize (or convert_hf_to_gguf.py --outtype q8_0) writes it: every matrix in blocks of 32 (an f16 scale, 32 int8), norms F32; its greedy outputs are not required to equal the fp32 limit's: how far they follow it is reported.",
  'llamacpp-q4':
    "the same on a GGUF Q4_0 (blocks of 32: an f16 scale, 32 four-bit values), output.weight Q8_0 (llama-quantize's choice where its rows are not whole Q6_K super-blocks; on the large preset it would pick Q6_K), norms F32; agreement with the fp32 limit reported.",
  'limit-int8': 'the limit with its MatMuls quantized as `--quantization int8` quantizes them (ONNX Runtime MatMulNBits, blocks of 32): the reference for spanserve int8.',
  'limit-int4': 'the same at `--quantization int4`.',
  'off-int8': "spanserve, tracing off, `--quantization int8`: its greedy outputs must equal the int8 limit's.",
  'off-int4': "spanserve, tracing off, `--quantization int4`: its greedy outputs must equal the int4 limit's.",
}

function measured(result: BenchResult): string {
  const s = result.settings
  const lines = [
    `Every configuration serves the same model directory with the same prompts: ${s.promptTokens}-token prompts cut from the model's corpus, sent as token ids, ` +
      `${s.maxTokens} generated tokens each (\`ignore_eos\`, so every request has the same length), greedy (temperature 0). ` +
      `Concurrency N means N requests in flight at once, closed loop: a client sends its next request when its last one ends; ` +
      `each level sends max(${s.rounds} × N, ${s.minRequests}) requests after ${s.warmup} warm-up requests (16 tokens each, ${s.warmupConcurrency ?? 4} at a time${s.warmupConcurrency === undefined ? '' : '; see Warm-up below'}). ` +
      'All configurations are started and warmed up first, then each level runs on every configuration back to back (in an order rotated from level to level), so that load from elsewhere on a shared machine falls on the configurations alike.' +
      ((s.repeats ?? 1) > 1
        ? ` Each level ran ${s.repeats} times on every configuration (the rotation shifted each time): the tables show the median repeat, a ratio is the median of the ${s.repeats} ratios of repeats that ran side by side with its range in brackets (the range is this run's noise), and CPU time is summed over all repeats.`
        : ''),
    '',
  ]
  for (const [name, what] of Object.entries(CONFIG_DESCRIPTIONS) as [ConfigName, string][]) {
    if (result.configs.some((c) => c.config === name)) lines.push(`- **${CONFIG_LABELS[name]}**: ${what}`)
  }
  return lines.join('\n')
}

function throughput(result: BenchResult): string {
  const lines = [markdownTable(COLUMNS, tableRows(result)), '']
  for (const c of result.configs.filter((x) => x.skipped)) lines.push(`Left out: ${CONFIG_LABELS[c.config]} [${c.model}]: ${c.skipped}`)
  for (const c of result.configs.filter((x) => x.failed)) lines.push(`Stopped: ${CONFIG_LABELS[c.config]} [${c.model}]: ${c.failed} (the levels before are kept).`)
  for (const c of result.configs.filter((x) => x.spans !== undefined))
    lines.push(`${CONFIG_LABELS[c.config]} [${c.model}]: the receiver counted ${c.spans} spans in ${c.exportRequests} OTLP export requests.`)
  lines.push('')
  for (const x of result.matches) {
    lines.push(
      `Same greedy tokens [${x.model}]: on ${x.prompts} prompts, the limit's output against ${x.compared.map((c) => CONFIG_LABELS[c]).join(', ')}: ` +
        `${x.mismatched.length === 0 ? '**identical**' : `**different** for ${x.mismatched.join(', ')} (${x.details.join('; ')})`}.`,
    )
  }
  return lines.join('\n')
}

function kvSection(result: BenchResult): string {
  const s = result.settings
  const tokens = s.promptTokens + s.maxTokens
  const rows = result.models.map((m) => {
    const perToken = 2 * m.layers * m.kvHeads * m.headDim * 4
    const at = (n: number) => `${((perToken * tokens * n) / MiB).toFixed(1)} MiB`
    return `| ${m.preset} | ${m.params === null ? '?' : `${(m.params / 1e6).toFixed(1)}M`} | ${m.layers} × ${m.kvHeads} × ${m.headDim} | ${(perToken / 1024).toFixed(0)} KiB | ${at(1)} | ${at(16)} | ${at(64)} |`
  })
  return [
    `For this run's prompt + output (${tokens} tokens per request):`,
    '',
    `| model | params | layers × KV heads × head dim | KV per token (fp32, K+V) | KV at c=1 | c=16 | c=64 |`,
    `| --- | ---: | --- | ---: | ---: | ---: | ---: |`,
    ...rows,
  ].join('\n')
}

function profileTables(prof: readonly ProcessProfile[]): string {
  const lines: string[] = []
  for (const p of prof) {
    lines.push(`**${p.role}**: busy ${(p.busy * 100).toFixed(0)}% of ${(p.wallMs / 1000).toFixed(1)} s`, '')
    lines.push('| share | self ms | function |', '| ---: | ---: | --- |')
    for (const t of p.top) lines.push(`| ${(t.share * 100).toFixed(1)}% | ${t.selfMs.toFixed(0)} | \`${t.fn}\` |`)
    lines.push('')
  }
  return lines.join('\n')
}

function lvl(result: BenchResult, config: ConfigName, model: string, n: number): LevelResult | undefined {
  return result.configs.find((c) => c.config === config && c.model === model && !c.skipped)?.levels.find((l) => l.concurrency === n)
}

function tokS(result: BenchResult, config: ConfigName, model: string, n: number): number | undefined {
  return lvl(result, config, model, n)?.tokensPerSec
}

/** config a over config b at one level: with repeats, the median paired ratio and its range. */
function cratio(result: BenchResult, a: ConfigName, b: ConfigName, model: string, n: number): string {
  const x = lvl(result, a, model, n)
  const y = lvl(result, b, model, n)
  if (!x || !y) return '–'
  const q = levelRatio(x, y)
  return q.n > 1 ? `${q.r.toFixed(2)}× (${q.lo.toFixed(2)}–${q.hi.toFixed(2)})` : `${q.r.toFixed(2)}×`
}
const num = (v: number | undefined): string => (v === undefined ? '–' : v.toFixed(0))

function beforeAfter(result: BenchResult): string {
  if (!result.configs.some((c) => c.config === 'base' || c.config === 'baselimit')) return 'Not measured in this run (no `--base`).'
  const out = [`This run's \`--base\`: ${result.baseRevision ? `revision ${result.baseRevision}` : 'a checkout without a revision'}.`, '']
  const withOn = result.configs.some((c) => c.config === 'baseon')
  out.push(`| model | conc | limit before | limit after | after/before | spanserve before | spanserve after | after/before |${withOn ? ' level 3 on/off before | level 3 on/off after |' : ''}`)
  out.push(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${withOn ? ' ---: | ---: |' : ''}`)
  for (const m of result.models) {
    for (const n of result.settings.concurrencies) {
      const lb = tokS(result, 'baselimit', m.preset, n)
      const la = tokS(result, 'limit', m.preset, n)
      const sb = tokS(result, 'base', m.preset, n)
      const sa = tokS(result, 'off', m.preset, n)
      const on = withOn ? ` ${cratio(result, 'baseon', 'base', m.preset, n)} | ${cratio(result, 'on', 'off', m.preset, n)} |` : ''
      out.push(`| ${m.preset} | ${n} | ${num(lb)} | ${num(la)} | ${cratio(result, 'limit', 'baselimit', m.preset, n)} | ${num(sb)} | ${num(sa)} | ${cratio(result, 'off', 'base', m.preset, n)} |${on}`)
    }
  }
  out.push('')
  const parts: string[] = []
  for (const m of result.models) {
    for (const n of result.settings.concurrencies) {
      const each = (['lockstep', 'spin'] as const).filter((c) => tokS(result, c, m.preset, n) !== undefined).map((c) => `${CONFIG_LABELS[c]} ${cratio(result, 'off', c, m.preset, n)}`)
      if (tokS(result, 'limitspin', m.preset, n) !== undefined) each.push(`limit against ${CONFIG_LABELS.limitspin} ${cratio(result, 'limit', 'limitspin', m.preset, n)}`)
      if (each.length) parts.push(`[${m.preset}] concurrency ${n}: spanserve against ${each.join('; ')}`)
    }
  }
  if (parts.length) {
    out.push('One change at a time, in the same run (spanserve with its defaults over the same server with one default turned back):')
    out.push('')
    for (const p of parts) out.push(`- ${p}`)
  }
  return out.join('\n')
}

function cpuOf(result: BenchResult, config: ConfigName, model: string, n: number): { perK: Map<string, number>; cores: number } | null {
  const l = result.configs.find((c) => c.config === config && c.model === model && !c.skipped)?.levels.find((x) => x.concurrency === n)
  if (!l?.cpuMs) return null
  const tokens = l.cpuTokens ?? (l.tokensPerSec * l.wallMs) / 1000
  const perK = new Map<string, number>()
  let all = 0
  for (const [k, ms] of Object.entries(l.cpuMs)) {
    const role = k.split('-')[0]!
    perK.set(role, (perK.get(role) ?? 0) + (ms * 1000) / tokens)
    all += ms
  }
  return { perK, cores: all / (l.cpuWallMs ?? l.wallMs) }
}

function tracingOverhead(result: BenchResult): string {
  const cpu = cpuRows(result)
  if (cpu.rows.length === 0) return NOT_MEASURED
  const out = [markdownTable(cpu.header, cpu.rows), '']
  for (const m of result.models) {
    const facts: string[] = []
    for (const n of [16, 64]) {
      const off = tokS(result, 'off', m.preset, n)
      const parts = (['on', 'onlive', 'on2'] as const).filter((c) => tokS(result, c, m.preset, n) !== undefined).map((c) => `${CONFIG_LABELS[c]} ${cratio(result, c, 'off', m.preset, n)}`)
      if (off !== undefined && parts.length) facts.push(`at concurrency ${n}, tok/s against tracing off: ${parts.join(', ')}`)
      const a = cpuOf(result, 'off', m.preset, n)
      for (const c of ['on', 'onlive', 'on2'] as const) {
        const b = cpuOf(result, c, m.preset, n)
        if (!a || !b) continue
        const extra = ['server', 'tokenizer', 'scheduler', 'worker', 'sink']
          .map((r) => [r, (b.perK.get(r) ?? 0) - (a.perK.get(r) ?? 0)] as const)
          .filter(([, d]) => Math.abs(d) >= 1)
          .map(([r, d]) => `${r} ${d >= 0 ? '+' : ''}${d.toFixed(0)}`)
        facts.push(`${CONFIG_LABELS[c]} at concurrency ${n}, extra CPU ms per 1,000 tokens over tracing off: ${extra.join(', ') || 'none ≥ 1 ms'}`)
      }
    }
    if (facts.length) {
      out.push(`[${m.preset}] From this run:`, '')
      for (const f of facts) out.push(`- ${f}`)
      out.push('')
    }
  }
  return out.join('\n')
}

function continuousDecodeSteps(result: BenchResult): string {
  if (!result.configs.some((c) => c.config === 'steps4' && !c.skipped)) return NOT_MEASURED
  const out = ['| model | conc | 1 step tok/s | 4 steps tok/s | 4 / 1 | 4 steps / limit | TTFT p50 ms, 1 / 4 | ITL p50 ms, 1 / 4 | ITL p99 ms, 1 / 4 |']
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  const ms = (l: LevelResult | undefined, k: 'ttftP50' | 'itlP50' | 'itlP99'): string => (l ? l[k].toFixed(2) : '–')
  for (const m of result.models) {
    for (const n of result.settings.concurrencies) {
      const a = lvl(result, 'off', m.preset, n)
      const b = lvl(result, 'steps4', m.preset, n)
      if (!b) continue
      out.push(
        `| ${m.preset} | ${n} | ${num(a?.tokensPerSec)} | ${num(b.tokensPerSec)} | ${cratio(result, 'steps4', 'off', m.preset, n)} | ${cratio(result, 'steps4', 'limit', m.preset, n)} | ${ms(a, 'ttftP50')} / ${ms(b, 'ttftP50')} | ${ms(a, 'itlP50')} / ${ms(b, 'itlP50')} | ${ms(a, 'itlP99')} / ${ms(b, 'itlP99')} |`,
      )
    }
  }
  return out.join('\n')
}

function dataParallel(result: BenchResult): string {
  if (!result.configs.some((c) => c.config === 'dp2' && !c.skipped)) return NOT_MEASURED
  const out = ['| model | conc | dp 1 tok/s | dp 2 tok/s | dp 2 / dp 1 | dp 1 cores busy | dp 2 cores busy |']
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const m of result.models) {
    for (const n of result.settings.concurrencies) {
      const a = tokS(result, 'off', m.preset, n)
      const b = tokS(result, 'dp2', m.preset, n)
      const ca = cpuOf(result, 'off', m.preset, n)
      const cb = cpuOf(result, 'dp2', m.preset, n)
      out.push(`| ${m.preset} | ${n} | ${num(a)} | ${num(b)} | ${cratio(result, 'dp2', 'off', m.preset, n)} | ${ca ? ca.cores.toFixed(2) : '–'} | ${cb ? cb.cores.toFixed(2) : '–'} |`)
    }
  }
  return out.join('\n')
}

function tensorParallel(result: BenchResult): string {
  if (!result.tpStep?.length) return NOT_MEASURED
  const out = ['| configuration | batch | step ms | all-reduce ms | all-reduce share | step / tp1 whole (same threads per process) | step / tp1 whole (all cores) | RSS MB per rank |']
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
  const cores = result.machine.cpus
  for (const r of result.tpStep) {
    const threads = /\((\d+) threads/.exec(r.config)?.[1]
    const ref = result.tpStep.find((x) => x.batch === r.batch && x.config.startsWith('tp1 whole') && x.config.includes(`(${threads ?? ''} thread`))
    const all = result.tpStep.find((x) => x.batch === r.batch && x.config === `tp1 whole (${cores} threads)`)
    out.push(
      `| ${r.config} | ${r.batch} | ${r.stepMs.toFixed(2)} | ${r.allReduceMs.toFixed(2)} | ${r.stepMs > 0 ? `${((100 * r.allReduceMs) / r.stepMs).toFixed(0)}%` : '–'} | ` +
        `${ref && ref !== r ? `${(r.stepMs / ref.stepMs).toFixed(2)}×` : '–'} | ${all && all !== r && !r.config.includes('all-reduces only') ? `${(r.stepMs / all.stepMs).toFixed(2)}×` : '–'} | ${r.rssMb.join(', ')} |`,
    )
  }
  return out.join('\n')
}
