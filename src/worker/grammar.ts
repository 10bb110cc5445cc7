/**
 * The worker's constrained decoding: one GrammarEngine over the model's tokenizer (made on the first
 * constrained request), each request's grammar prepared (compiled, or found in the cache) before its
 * first chunk runs, and a logits processor per constrained sequence for its sampler.
 */
import { join } from 'node:path'
import type { ModelInfo } from '../model/load.ts'
import { GrammarEngine, type ConstrainedOutput, type PreparedGrammar } from '../model/grammar/engine.ts'
import { readGrammarVocab } from '../model/grammar/vocab.ts'
import type { SamplingParams } from '../sampling/params.ts'
import type { PrefillEntry } from '../ipc/messages.ts'
import type { LogitsProcessor } from './logits-processor.ts'
import * as tracing from '../tracing/index.ts'

let engine: GrammarEngine | null = null
/** Prepared grammars by the request's SamplingParams object, which its Sampler is made from. */
const prepared = new WeakMap<SamplingParams, { engine: GrammarEngine; grammar: PreparedGrammar }>()

function engineFor(info: ModelInfo): GrammarEngine {
  engine ??= new GrammarEngine(readGrammarVocab(join(info.dir, 'tokenizer.json'), info.vocabSize, info.eosTokenIds))
  return engine
}

/**
 * Compile (or find) the request's grammar before its prefill, as the `grammar_compile` slice.
 * Throws what the engine refuses (the server checked the constraint, so only a broken engine does).
 */
export async function prepareGrammar(info: ModelInfo, rid: string, sampling: SamplingParams): Promise<void> {
  if (!sampling.constraint) return
  const e = engineFor(info)
  const startNs = tracing.nowNs()
  const grammar = await e.prepare(sampling.constraint)
  prepared.set(sampling, { engine: e, grammar })
  tracing.batchSlice([rid], tracing.SLICES.grammarCompile, startNs, tracing.nowNs(), {
    [tracing.SPANSERVE_GRAMMAR_TYPE]: sampling.constraint.type,
    [tracing.SPANSERVE_GRAMMAR_CACHE_HIT]: grammar.info.cacheHit,
  })
}

/**
 * The step loop's prepare hook (step.ts StepLoopOptions.prepare): a constrained request's grammar is
 * ready before its first chunk (false fails the request, logged); others pass without waiting. Only
 * the rank that samples (TP rank 0) compiles.
 */
export function grammarPrepare(info: ModelInfo, tpRank: number, log: { error(obj: object, msg: string): void }): (entry: PrefillEntry) => Promise<boolean> | true {
  return (entry) => {
    if (!entry.sampling?.constraint || tpRank !== 0) return true
    return prepareGrammar(info, entry.rid, entry.sampling).then(
      () => true,
      (err: unknown) => (log.error({ err, rid: entry.rid }, 'grammar compile failed'), false),
    )
  }
}

/** A matcher's WebAssembly memory is freed when its sequence's sampler is collected (samplers have no end call). */
const matchers = new FinalizationRegistry<ConstrainedOutput>((output) => output.dispose())

/** Masks what the grammar does not allow; advances it with each accepted token. */
class GrammarProcessor implements LogitsProcessor {
  constructor(private readonly output: ConstrainedOutput) {}

  apply(logits: Float32Array, offset: number, vocab: number): void {
    this.output.applyMask(logits, offset, vocab)
  }

  accept(token: number): void {
    this.output.accept(token)
  }
}

/** The sequence's grammar processor, or null when it is unconstrained (or, on a TP rank that does not sample, unprepared). */
export function grammarProcessor(params: SamplingParams): LogitsProcessor | null {
  if (!params.constraint) return null
  const p = prepared.get(params)
  // Kept (it goes with the params object): sequences forked from one request (n > 1) each get their own matcher.
  if (!p) throw new Error('a constrained sequence started without its grammar prepared')
  const output = p.engine.matcher(p.grammar)
  const processor = new GrammarProcessor(output)
  matchers.register(processor, output)
  return processor
}
