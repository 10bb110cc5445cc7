/** The bench's flags, their defaults, and --help. */
import { parseArgs } from 'node:util'
import type { PresetName } from '../src/model/presets.ts'

export const CONFIG_NAMES = [
  'limit',
  'limitspin',
  'baselimit',
  'limit-int8',
  'limit-int4',
  'off',
  'off-int8',
  'off-int4',
  'lockstep',
  'spin',
  'steps4',
  'base',
  'baseon',
  'on',
  'onlive',
  'on2',
  'fr',
  'dp2',
  'tjs',
  'llamacpp',
  'llamacpp-q8',
  'llamacpp-q4',
] as const
/** Run unless --configs says otherwise; base and baselimit join them when --base is given. */
export const DEFAULT_CONFIGS: readonly ConfigName[] = ['limit', 'off', 'on', 'onlive', 'on2', 'dp2', 'tjs', 'llamacpp']
export type ConfigName = (typeof CONFIG_NAMES)[number]
/** What the targets need, run on the large preset unless --large-configs says otherwise. */
const LARGE_CONFIGS = ['limit', 'off', 'on', 'on2', 'tjs', 'llamacpp', 'limit-int8', 'limit-int4', 'off-int8', 'off-int4', 'llamacpp-q8', 'llamacpp-q4'] as const

/**
 * The weight-quantized configurations and their block quantization: spanserve's --quantization int8
 * and int4 (ONNX Runtime's MatMulNBits, blocks of 32) beside llama.cpp's Q8_0 and Q4_0 (blocks of 32).
 */
export const CONFIG_QUANTIZATION: Partial<Record<ConfigName, 'int8' | 'int4'>> = {
  'limit-int8': 'int8',
  'limit-int4': 'int4',
  'off-int8': 'int8',
  'off-int4': 'int4',
  'llamacpp-q8': 'int8',
  'llamacpp-q4': 'int4',
}

export const CONFIG_LABELS: Record<ConfigName, string> = {
  limit: 'limit (bare ORT loop)',
  limitspin: 'limit, ORT threads spinning',
  baselimit: 'limit, --base runner',
  'limit-int8': 'limit, int8 weights',
  'limit-int4': 'limit, int4 weights',
  off: 'spanserve, tracing off',
  'off-int8': 'spanserve, tracing off, --quantization int8',
  'off-int4': 'spanserve, tracing off, --quantization int4',
  lockstep: 'spanserve, tracing off, --disable-overlap-schedule',
  spin: 'spanserve, tracing off, --intra-op-spinning',
  steps4: 'spanserve, tracing off, --num-continuous-decode-steps 4',
  base: 'spanserve --base, tracing off',
  baseon: 'spanserve --base, tracing on',
  on: 'spanserve, tracing on',
  onlive: 'spanserve, tracing on, sink decoding live',
  on2: 'spanserve, tracing on, level 2',
  fr: 'spanserve, tracing on, level 2, flight recorder 30 s',
  dp2: 'spanserve --dp-size 2, tracing off',
  tjs: 'transformers.js',
  llamacpp: 'llama.cpp (node-llama-cpp), GGUF F32',
  'llamacpp-q8': 'llama.cpp (node-llama-cpp), GGUF Q8_0',
  'llamacpp-q4': 'llama.cpp (node-llama-cpp), GGUF Q4_0',
}

export interface BenchOptions {
  models: PresetName[]
  configs: ConfigName[]
  concurrencies: number[]
  promptTokens: number
  maxTokens: number
  /** Requests per level: max(rounds × concurrency, minRequests). */
  rounds: number
  minRequests: number
  warmup: number
  intraOpThreads: number
  /** Each level runs this many times on every configuration (interleaved); the median is reported. */
  repeats: number
  profile: boolean
  docs: boolean
  outDir: string
  /** Another checkout of spanserve (e.g. `git worktree add /tmp/base HEAD`): the before of a before/after. */
  base: string | null
  /** The OTLP sink decodes each export as it arrives (live) or after the level (deferred, the default). */
  sinkDecode: 'deferred' | 'live'
  /** Only regenerate docs/benchmarks.md and its chart from this results file (after editing bench/docs.ts). */
  docsFrom: string | null
  /** Run bench/tp-step.ts (tp 2 vs tp 1 decode step) and report it. */
  tpStep: boolean
  /** The configurations run on the large preset (they take several times longer there). */
  largeConfigs: ConfigName[]
  /** Run the prefix-cache and API-feature workloads (bench/features.ts) instead of the configurations. */
  features: boolean
  /** Run the isolation workloads (bench/isolation.ts): what one client or input costs the others. */
  isolation: boolean
  /** Which parts of --isolation run (default all): constraints, hog, huge, memory. */
  isolationParts: IsolationPart[]
  /** Which parts of --features run (default all): cache, api, base. */
  featureParts: FeaturePart[]
  /** Run the router workloads (bench/router.ts): its overhead, and cache-aware routing against round robin. */
  router: boolean
}

export const ISOLATION_PARTS = ['constraints', 'hog', 'huge', 'memory'] as const
export type IsolationPart = (typeof ISOLATION_PARTS)[number]
export const FEATURE_PARTS = ['cache', 'api', 'base'] as const
export type FeaturePart = (typeof FEATURE_PARTS)[number]

const HELP = `usage: npm run bench -- [flags]

  --features             instead of the configurations: the prefix-cache workloads (shared
                         1,024-token system prompt, multi-turn chat, no sharing; cache on vs
                         --disable-radix-cache) and the API features (top_logprobs 20, json_schema,
                         n=4) against plain requests, plus plain requests against --base when given
  --isolation            instead of the configurations: what one client or input costs the others
                         (costly constraints, an n=128 hog, 4 MB prompts, memory after a burst);
                         ratios from one run, written to bench/results/isolation-<date>.json
  --router               instead of the configurations: spanserve router's TTFT at c1 against
                         straight to its instance, multi-turn chats over 3 instances with
                         --policy cache_aware against round_robin, and a prefill/decode pair
                         against a co-located instance on the same cores; ratios from one run,
                         written to <out>/router-<date>.json (about 4 minutes on 2 cores;
                         SPANSERVE_BENCH_ROUTER_PARTS=overhead,routing,pd picks parts)
  --isolation-only LIST  of constraints,hog,huge,memory: only these parts of --isolation
  --features-only LIST   of cache,api,base: only these parts of --features (default: all)
  --models LIST          model presets, comma-separated (default: default,large; on 2 cores the
                         default preset takes about 8 minutes and the large one 12 more)
  --configs LIST         of limit,limitspin,baselimit,limit-int8,limit-int4,off,off-int8,off-int4,
                         lockstep,spin,steps4,base,baseon,on,onlive,on2,fr,dp2,tjs,llamacpp,llamacpp-q8,
                         llamacpp-q4 (default: limit,off,on,onlive,on2,dp2,tjs,llamacpp; baselimit
                         and base join with --base). llamacpp: llama.cpp (node-llama-cpp's prebuilt
                         build) on a GGUF F32 of the same weights, its greedy tokens checked against
                         the limit's before it is measured. llamacpp-q8, llamacpp-q4: the same on
                         GGUF Q8_0, Q4_0 (as llama-quantize writes them); off-int8, off-int4,
                         limit-int8, limit-int4: spanserve's --quantization int8, int4. Quantized
                         outputs are not the fp32 limit's: spanserve's of one type must equal each
                         other, and each one's agreement with the limit's is reported. on: tracing
                         at level 3 (every decode step); onlive: the same with the OTLP sink
                         decoding every export as it arrives (see --sink-decode); on2: level 2
                         (the default level); fr: level 2 with --trace-flight-recorder 30; dp2: --dp-size 2; lockstep: --disable-overlap-schedule;
                         spin: --intra-op-spinning; steps4: --num-continuous-decode-steps 4;
                         limitspin: the limit with ONNX Runtime's threads spinning; baseon: the
                         --base checkout at level 3
  --large-configs LIST   the configurations to run on the large preset (default: those of
                         limit,off,on,on2,tjs,llamacpp that --configs names, which the targets need,
                         and the quantized ones it names)
  --base DIR             another checkout of spanserve (node_modules linked) to compare against:
                         adds baselimit (its ModelRunner in this process) and base (its server)
  --concurrency LIST     concurrency levels (default: 1,4,16,64)
  --prompt-tokens N      prompt length in tokens (default: 64)
  --max-tokens N         generated tokens per request, ignore_eos (default: 128)
  --rounds N             requests per level = max(N x concurrency, --min-requests) (default: 2)
  --min-requests N       (default: 8)
  --repeats N            run each level N times on every configuration, interleaved; report the
                         median, and ratios as the median of the N paired ratios with their range
                         (default: 3: one pass moves ratios by more than the targets' margins here)
  --warmup N             warm-up requests per configuration, 16 tokens each, 16 at a time
                         (default: 1024: a fresh server's per-request CPU with tracing on falls
                         for about that many requests while V8 compiles the hot paths; see
                         docs/benchmarks.md, "Warm-up")
  --intra-op-threads N   ONNX Runtime threads for limit and spanserve, and llama.cpp's (default: 0:
                         ORT's choice; llama.cpp's: the fastest of 1..cores, measured at its start)
  --no-profile           skip the last step: spanserve (tracing off, and on at level 3 when on is
                         run; concurrency 16, 64 requests) run again under the sampling profiler,
                         each process's top functions printed
  --no-tp-step           skip bench/tp-step.ts (decode step at --tp-size 2 vs 1)
  --no-docs              do not regenerate docs/benchmarks.md and its chart
  --out DIR              where the JSON results go (default: bench/results)
  --docs-from FILE       measure nothing: regenerate docs/benchmarks.md and its chart from a results
                         file (after editing bench/docs.ts's prose)
  --sink-decode MODE     for on and on2: deferred (default): the OTLP sink keeps each export's
                         bytes and counts their spans once the server has stopped, so a
                         collector's work, which runs elsewhere in a deployment, does not take the
                         measured server's cores; live: decode each export as it arrives (what
                         the bench did before 2026-11-22, and what onlive always does)
`

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}

function positiveInt(name: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`)
  return n
}

export function parseOptions(argv: string[]): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: 'string', default: 'default,large' },
      configs: { type: 'string' },
      'large-configs': { type: 'string' },
      base: { type: 'string' },
      'sink-decode': { type: 'string', default: 'deferred' },
      concurrency: { type: 'string', default: '1,4,16,64' },
      'prompt-tokens': { type: 'string', default: '64' },
      'max-tokens': { type: 'string', default: '128' },
      rounds: { type: 'string', default: '2' },
      'min-requests': { type: 'string', default: '8' },
      warmup: { type: 'string', default: '1024' },
      repeats: { type: 'string', default: '3' },
      'intra-op-threads': { type: 'string', default: '0' },
      'no-profile': { type: 'boolean', default: false },
      'no-docs': { type: 'boolean', default: false },
      'no-tp-step': { type: 'boolean', default: false },
      'docs-from': { type: 'string' },
      features: { type: 'boolean', default: false },
      isolation: { type: 'boolean', default: false },
      router: { type: 'boolean', default: false },
      'isolation-only': { type: 'string', default: 'constraints,hog,huge,memory' },
      'features-only': { type: 'string', default: FEATURE_PARTS.join(',') },
      out: { type: 'string', default: 'bench/results' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return null
  }
  const models = list(values.models)
  for (const m of models) if (m !== 'default' && m !== 'large') throw new Error(`--models: unknown preset ${m} (default, large)`)
  const base = values.base ?? null
  const configs = values.configs !== undefined ? list(values.configs) : [...DEFAULT_CONFIGS, ...(base ? ['base', 'baselimit'] : [])]
  if (!base && configs.some((c) => c === 'base' || c === 'baselimit' || c === 'baseon')) throw new Error('--configs base, baselimit, baseon need --base DIR')
  const sinkDecode = values['sink-decode']
  if (sinkDecode !== 'deferred' && sinkDecode !== 'live') throw new Error(`--sink-decode: deferred or live, got ${sinkDecode}`)
  for (const c of configs) if (!(CONFIG_NAMES as readonly string[]).includes(c)) throw new Error(`--configs: unknown ${c} (${CONFIG_NAMES.join(', ')})`)
  const large = values['large-configs'] !== undefined ? list(values['large-configs']) : configs.filter((c) => (LARGE_CONFIGS as readonly string[]).includes(c))
  for (const c of large ?? []) if (!configs.includes(c)) throw new Error(`--large-configs: ${c} is not among --configs`)
  const concurrencies = list(values.concurrency).map((v) => positiveInt('--concurrency', v))
  if (concurrencies.some((n) => n < 1)) throw new Error('--concurrency levels must be at least 1')
  const maxTokens = positiveInt('--max-tokens', values['max-tokens'])
  if (maxTokens < 2) throw new Error('--max-tokens must be at least 2 (inter-token latency needs two tokens)')
  return {
    models: models as PresetName[],
    configs: CONFIG_NAMES.filter((c) => configs.includes(c)),
    concurrencies,
    promptTokens: positiveInt('--prompt-tokens', values['prompt-tokens']),
    maxTokens,
    rounds: positiveInt('--rounds', values.rounds),
    minRequests: positiveInt('--min-requests', values['min-requests']),
    warmup: positiveInt('--warmup', values.warmup),
    repeats: Math.max(1, positiveInt('--repeats', values.repeats)),
    intraOpThreads: positiveInt('--intra-op-threads', values['intra-op-threads']),
    profile: !values['no-profile'],
    docs: !values['no-docs'],
    outDir: values.out,
    base,
    sinkDecode,
    tpStep: !values['no-tp-step'],
    docsFrom: values['docs-from'] ?? null,
    largeConfigs: CONFIG_NAMES.filter((c) => large.includes(c)),
    features: values.features,
    isolation: values.isolation,
    isolationParts: isolationParts(values['isolation-only']),
    featureParts: featureParts(values['features-only']),
    router: values.router,
  }
}

function isolationParts(value: string): IsolationPart[] {
  const parts = list(value)
  for (const p of parts) if (!(ISOLATION_PARTS as readonly string[]).includes(p)) throw new Error(`--isolation-only: unknown ${p} (${ISOLATION_PARTS.join(', ')})`)
  return parts as IsolationPart[]
}

function featureParts(value: string): FeaturePart[] {
  const parts = list(value)
  for (const p of parts) if (!(FEATURE_PARTS as readonly string[]).includes(p)) throw new Error(`--features-only: unknown ${p} (${FEATURE_PARTS.join(', ')})`)
  return parts as FeaturePart[]
}
