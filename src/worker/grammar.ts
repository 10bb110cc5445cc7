/**
 * The worker's constrained decoding. The scheduler asks for a request's grammar when the request
 * arrives (grammar_prepare); it compiles in the pool's threads (src/structured-output/pool.ts) while the
 * request waits out of the batch and the step loop goes on; the answer (ready, or a 400 refusal)
 * goes back to the scheduler. When the request's first chunk runs, its sequences' samplers get
 * matchers in the thread that compiled the grammar; the request lets its grammar go when released.
 */
import { join } from 'node:path'
import type { ModelInfo } from '../model/load.ts'
import { Utf8Guard } from '../structured-output/engine.ts'
import { readGrammarVocab } from '../structured-output/vocab.ts'
import { GrammarPool, type Verdict } from '../structured-output/pool.ts'
import type { OutputConstraint } from '../structured-output/constraint.ts'
import type { SamplingParams } from '../sampling/params.ts'
import type { PrefillEntry } from '../ipc/messages.ts'
import type { LogitsProcessor } from './logits-processor.ts'
import * as tracing from '../tracing/index.ts'

export interface GrammarSettings {
  threads: number
  compileTimeoutMs: number
  threadMemoryBytes: number
}

const DEFAULTS: GrammarSettings = { threads: 8, compileTimeoutMs: 10_000, threadMemoryBytes: 256 * 2 ** 20 }

let pool: GrammarPool | null = null
let settings = DEFAULTS
/** The rid whose grammar each request's SamplingParams object uses (its samplers are made from it). */
const ridOf = new WeakMap<SamplingParams, string>()
/** Compile timings by rid, recorded as the grammar_compile slice once the request's trace has started here. */
const timings = new Map<string, { startNs: number; endNs: number; type: string; cacheHit: boolean }>()

/** Settings from the worker's configuration (before the first constrained request). */
export function configureGrammar(s: GrammarSettings): void {
  settings = s
}

function poolFor(info: ModelInfo): GrammarPool {
  if (pool) return pool
  const start = { tokenizerPath: join(info.dir, 'tokenizer.json'), vocabSize: info.vocabSize, stopTokenIds: [...info.eosTokenIds] }
  const guard = new Utf8Guard(readGrammarVocab(start.tokenizerPath, start.vocabSize, start.stopTokenIds))
  pool = new GrammarPool({ start, guard, threads: settings.threads, compileTimeoutMs: settings.compileTimeoutMs, threadMemoryBytes: settings.threadMemoryBytes })
  return pool
}

/** Compile (or find) `rid`'s grammar off the step loop. */
export async function compileFor(info: ModelInfo, rid: string, constraint: OutputConstraint): Promise<Verdict> {
  const startNs = tracing.nowNs()
  const verdict = await poolFor(info).prepare(rid, constraint)
  if (verdict.ok) timings.set(rid, { startNs, endNs: tracing.nowNs(), type: constraint.type, cacheHit: verdict.cacheHit })
  return verdict
}

/** The request is done or gone: its matchers close and its grammar is let go. */
export function releaseGrammar(rid: string): void {
  timings.delete(rid)
  pool?.release(rid)
}

export function releaseAllGrammars(): void {
  timings.clear()
  pool?.releaseAll()
}

/** Pool threads and their WebAssembly memory, for the worker's stats. */
export function grammarStats(): { threads: number; memoryBytes: number } {
  return pool?.stats() ?? { threads: 0, memoryBytes: 0 }
}

export async function closeGrammars(): Promise<void> {
  await pool?.close()
  pool = null
}

/**
 * Compile `sampling`'s grammar and ready it for `rid`'s samplers at once (tests and callers that run
 * the runner directly, without the scheduler's grammar_prepare). Throws the refusal.
 */
export async function prepareGrammar(info: ModelInfo, rid: string, sampling: SamplingParams): Promise<void> {
  if (!sampling.constraint) return
  const verdict = await compileFor(info, rid, sampling.constraint)
  if (!verdict.ok) throw new Error(verdict.message)
  ridOf.set(sampling, rid)
}

/**
 * The step loop's prepare hook (step.ts StepLoopOptions.prepare), synchronous: a constrained
 * request's grammar was compiled before the scheduler let it into a batch, so here it is only looked
 * up (false fails the request: this worker lost it, a restart say). Only the rank that samples holds grammars.
 */
export function grammarPrepare(tpRank: number): (entry: PrefillEntry) => true | Promise<boolean> {
  return (entry) => {
    if (!entry.sampling?.constraint || tpRank !== 0) return true
    if (!pool?.holds(entry.rid)) return Promise.resolve(false)
    ridOf.set(entry.sampling, entry.rid)
    const t = timings.get(entry.rid)
    if (t) {
      timings.delete(entry.rid)
      tracing.batchSlice([entry.rid], tracing.SLICES.grammarCompile, t.startNs, t.endNs, {
        [tracing.SPANSERVE_GRAMMAR_TYPE]: t.type,
        [tracing.SPANSERVE_GRAMMAR_CACHE_HIT]: t.cacheHit,
      })
    }
    return true
  }
}

/** The sequence's grammar processor, or null when it is unconstrained (or, on a TP rank that does not sample, unprepared). */
export function grammarProcessor(params: SamplingParams): LogitsProcessor | null {
  if (!params.constraint) return null
  const rid = ridOf.get(params)
  // Kept (it goes with the params object): sequences forked from one request (n > 1) each get their own matcher.
  if (rid === undefined || !pool) throw new Error('a constrained sequence started without its grammar prepared')
  return pool.matcher(rid)
}
