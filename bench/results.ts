/** The shape of one bench run, as written to bench/results/<date>.json and read by the report. */
import type { ConfigName } from './options.ts'
import type { ProcessProfile } from './profile.ts'
import type { LevelResult } from './stats.ts'
import type { TracingMicro } from './tracing-micro.ts'
import type { SamplerMicroRow } from './sampler-micro.ts'

export interface ConfigResult {
  config: ConfigName
  model: string
  levels: LevelResult[]
  /** Why the configuration did not run (it is then left out of the table). */
  skipped?: string
  /** Why it stopped early: `levels` holds the levels it completed before. */
  failed?: string
  /** tracing on: spans the receiver counted, and export requests. */
  spans?: number
  exportRequests?: number
}

export interface MatchResult {
  model: string
  /** Configurations whose greedy outputs were compared with the limit's (a quantized one: with the limit of its quantization). */
  compared: ConfigName[]
  prompts: number
  /** Configurations whose outputs differ from the limit's on some prompt. */
  mismatched: ConfigName[]
  /** First differing output per mismatched configuration. */
  details: string[]
  /** Quantized configurations: how far their outputs follow the fp32 limit's, and llama.cpp's spanserve's of the same type. */
  agreement?: Agreement[]
}

/** Greedy outputs that need not be equal (other weights, other rounding), compared on the check prompts. */
export interface Agreement {
  config: ConfigName
  against: ConfigName
  /** Check prompts whose outputs are identical. */
  identical: number
  prompts: number
  /** The outputs' common prefix, as a share of `against`'s output, averaged over the prompts. */
  prefixShare: number
}

export interface Verdict {
  target: string
  met: boolean | null
  measured: string
}

export interface BenchResult {
  date: string
  durationS: number
  machine: { cpus: number; cpuModel: string; memGiB: number; node: string; onnxruntime: string; transformersJs: string | null }
  settings: {
    promptTokens: number
    maxTokens: number
    concurrencies: number[]
    rounds: number
    minRequests: number
    warmup: number
    warmupConcurrency?: number
    repeats?: number
    intraOpThreads: number
  }
  models: { preset: string; params: number | null; layers: number; hidden: number; kvHeads: number; headDim: number }[]
  configs: ConfigResult[]
  matches: MatchResult[]
  tracingMicro: TracingMicro | null
  /** bench/sampler-micro.ts: top-k/top-p sampling per token, partial selection vs the full sort. */
  samplerMicro?: SamplerMicroRow[]
  verdicts: Verdict[]
  profile: ProcessProfile[] | null
  /** The same profile with tracing on (level 3). */
  profileOn?: ProcessProfile[] | null
  /** bench/tp-step.ts's lines: decode step ms and all-reduce ms per configuration and batch. */
  tpStep?: { preset: string; config: string; batch: number; stepMs: number; allReduceMs: number; rssMb: number[] }[] | null
  /** How the OTLP sink decoded spans (bench/otlp-sink.ts). */
  sinkDecode?: 'deferred' | 'live'
  /** --base: the checkout the base and baselimit configurations ran from. */
  base?: string | null
  /** Its git revision, where known. */
  baseRevision?: string | null
  /** The bench's own arguments (after \`npm run bench --\`). */
  args?: string[]
}
