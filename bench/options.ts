/** The bench's flags, their defaults, and --help. */
import { parseArgs } from 'node:util'
import type { PresetName } from '../src/model/presets.ts'

export const CONFIG_NAMES = ['limit', 'off', 'on', 'tjs'] as const
export type ConfigName = (typeof CONFIG_NAMES)[number]

export const CONFIG_LABELS: Record<ConfigName, string> = {
  limit: 'limit (bare ORT loop)',
  off: 'spanserve, tracing off',
  on: 'spanserve, tracing on',
  tjs: 'transformers.js',
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
  profile: boolean
  docs: boolean
  outDir: string
}

const HELP = `usage: npm run bench -- [flags]

  --models LIST          model presets, comma-separated (default: default; add large: default,large,
                         about 7 more minutes on 2 cores)
  --configs LIST         of limit,off,on,tjs (default: all)
  --concurrency LIST     concurrency levels (default: 1,4,16,64)
  --prompt-tokens N      prompt length in tokens (default: 64)
  --max-tokens N         generated tokens per request, ignore_eos (default: 128)
  --rounds N             requests per level = max(N x concurrency, --min-requests) (default: 2)
  --min-requests N       (default: 8)
  --warmup N             warm-up requests per configuration, 16 tokens each (default: 8)
  --intra-op-threads N   ONNX Runtime threads for limit and spanserve (default: 0, ORT's choice)
  --no-profile           skip the last step: spanserve (tracing off, concurrency 16, 64 requests)
                         run again under --cpu-prof, each process's top functions printed
  --no-docs              do not regenerate docs/benchmarks.md and its chart
  --out DIR              where the JSON results go (default: bench/results)
`

function list(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean)
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
      models: { type: 'string', default: 'default' },
      configs: { type: 'string', default: CONFIG_NAMES.join(',') },
      concurrency: { type: 'string', default: '1,4,16,64' },
      'prompt-tokens': { type: 'string', default: '64' },
      'max-tokens': { type: 'string', default: '128' },
      rounds: { type: 'string', default: '2' },
      'min-requests': { type: 'string', default: '8' },
      warmup: { type: 'string', default: '8' },
      'intra-op-threads': { type: 'string', default: '0' },
      'no-profile': { type: 'boolean', default: false },
      'no-docs': { type: 'boolean', default: false },
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
  const configs = list(values.configs)
  for (const c of configs) if (!(CONFIG_NAMES as readonly string[]).includes(c)) throw new Error(`--configs: unknown ${c} (${CONFIG_NAMES.join(', ')})`)
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
    intraOpThreads: positiveInt('--intra-op-threads', values['intra-op-threads']),
    profile: !values['no-profile'],
    docs: !values['no-docs'],
    outDir: values.out,
  }
}
