/**
 * Constrained decoding for one model: its vocabulary as xgrammar's TokenizerInfo, a compiler, an LRU
 * cache of compiled grammars by constraint, and one matcher per sequence that masks the next token's
 * logits and advances with each accepted token. Compiling is async (prepare, before the sequence's
 * first step); the per-token calls are synchronous, as the sampler makes them.
 */
import type { CompiledGrammar, GrammarCompiler, TokenizerInfo } from '@mlc-ai/web-xgrammar'
import { compileConstraint, constraintKey, type OutputConstraint } from './constraint.ts'
import { firstContinuation, type GrammarVocab } from './vocab.ts'
import { XgrammarInstance, type EmbindMatcher } from './xgrammar.ts'

/** What one compile cost, for the grammar_compile slice. */
export interface CompileInfo {
  cacheHit: boolean
  ms: number
}

interface Backend {
  instance: XgrammarInstance
  info: TokenizerInfo
  compiler: GrammarCompiler
  /** Insertion order is recency: a hit is re-inserted, the oldest is evicted. */
  cache: Map<string, CompiledGrammar>
}

/** A compiled grammar and the instance it lives in: what a matcher is made from. */
export interface PreparedGrammar {
  /** Its cache key (constraintKey). */
  key: string
  grammar: CompiledGrammar
  instance: XgrammarInstance
  info: CompileInfo
}

/**
 * What xgrammar misses of UTF-8 across token boundaries: after a token that ends on the lead byte
 * E0, ED, F0 or F4, the next byte has a narrower range than 80-BF (no overlong forms, surrogates or
 * code points past U+10FFFF); tokens opening with a continuation byte outside it are masked.
 */
export class Utf8Guard {
  /** Token ids by their first byte, for the continuation bytes 80-BF. */
  private readonly byFirst: Int32Array[]

  constructor(readonly vocab: GrammarVocab) {
    const lists: number[][] = Array.from({ length: 64 }, () => [])
    vocab.firstByte.forEach((b, id) => {
      if ((b & 0xc0) === 0x80) lists[b - 0x80]!.push(id)
    })
    this.byFirst = lists.map((l) => Int32Array.from(l))
  }

  /** Mask the tokens that may not follow a character begun with `lead` (0: none pending). */
  apply(lead: number, logits: Float32Array, offset: number): void {
    if (lead !== 0xe0 && lead !== 0xed && lead !== 0xf0 && lead !== 0xf4) return
    const [lo, hi] = firstContinuation(lead)
    for (let b = 0x80; b <= 0xbf; b++) {
      if (b >= lo && b <= hi) continue
      for (const id of this.byFirst[b - 0x80]!) logits[offset + id] = -Infinity
    }
  }

  /** The lead byte left pending after `token`, given the one pending before it. */
  next(pending: number, token: number): number {
    const last = this.vocab.lastByte[token] ?? 0
    if (last === 0) return pending
    return last >= 0xc2 && last <= 0xf4 ? last : 0
  }
}

export class GrammarEngine {
  private backend: Promise<Backend> | null = null
  /** The live backend once open, for the synchronous memory reading. */
  private opened: Backend | null = null
  private readonly guard: Utf8Guard
  /** Keys held by requests (count each): eviction passes them by, so their handles stay usable. */
  private readonly pinned = new Map<string, number>()

  constructor(
    readonly vocab: GrammarVocab,
    /** Compiled grammars kept (each from a few KB to a few hundred KB for a large vocabulary). */
    readonly cacheSize = 64,
  ) {
    this.guard = new Utf8Guard(vocab)
  }

  private async open(): Promise<Backend> {
    const instance = await XgrammarInstance.create()
    const { encoded, vocabType, prependSpace, vocabSize, stopTokenIds } = this.vocab
    const info = await instance.call((xg) => xg.TokenizerInfo.createTokenizerInfo(encoded, vocabType, prependSpace, vocabSize, stopTokenIds))
    const compiler = await instance.call((xg) => xg.GrammarCompiler.createGrammarCompiler(info, false))
    this.opened = { instance, info, compiler, cache: new Map() }
    return this.opened
  }

  /** The live backend; after an abort, a fresh instance (matchers made before keep the old one). */
  private async current(): Promise<Backend> {
    if (this.backend) {
      const b = await this.backend.catch(() => null)
      if (b && !b.instance.broken) return b
    }
    this.backend = this.open()
    return this.backend
  }

  /** Load the engine now rather than on the first constrained request. */
  async warm(): Promise<void> {
    await this.current()
  }

  /** The constraint compiled, from the cache or now. Throws GrammarSyntaxError for what the engine refuses. */
  async prepare(c: OutputConstraint): Promise<PreparedGrammar> {
    const b = await this.current()
    const key = constraintKey(c)
    const hit = b.cache.get(key)
    if (hit) {
      b.cache.delete(key)
      b.cache.set(key, hit)
      return { key, grammar: hit, instance: b.instance, info: { cacheHit: true, ms: 0 } }
    }
    const t0 = performance.now()
    const grammar = await b.instance.call((xg) => compileConstraint(b.compiler, c, xg))
    const ms = performance.now() - t0
    b.cache.set(key, grammar)
    for (const [oldest, g] of b.cache) {
      if (b.cache.size <= this.cacheSize) break
      if (this.pinned.has(oldest)) continue
      b.cache.delete(oldest)
      // A matcher holds its own reference to the grammar's data: disposing the handle does not end it.
      g.dispose()
    }
    return { key, grammar, instance: b.instance, info: { cacheHit: false, ms } }
  }

  /** A matcher at the start of a prepared grammar (synchronous). */
  matcher(prepared: PreparedGrammar): ConstrainedOutput {
    const { grammar, instance } = prepared
    const handle = instance.callSync((b) => new b.GrammarMatcher(grammar.handle, b.vecIntFromJSArray(this.vocab.stopTokenIds), false, -1))
    return new ConstrainedOutput(handle, instance, this.vocab.vocabSize, this.vocab.stopTokenIds, this.guard)
  }

  /** Whether the constraint is compiled and cached (a prepare() would be a hit). */
  async holds(c: OutputConstraint): Promise<boolean> {
    return (await this.current()).cache.has(constraintKey(c))
  }

  /** A request holds (+1) or lets go of (-1) a cached grammar: held ones are not evicted. */
  pin(key: string, delta: 1 | -1): void {
    const n = (this.pinned.get(key) ?? 0) + delta
    if (n > 0) this.pinned.set(key, n)
    else this.pinned.delete(key)
  }

  /** The WebAssembly memory of the live instance (it never shrinks: only ending the instance gives it back). */
  memoryBytes(): number {
    return this.opened?.instance.memoryBytes() ?? 0
  }

  /** Compiled grammars held (for tests and stats). */
  async cachedGrammars(): Promise<number> {
    return (await this.current()).cache.size
  }
}

/**
 * One sequence's place in its grammar. Per step: applyMask() to the logits before the draw, then
 * accept() with the token drawn. Once the grammar is complete only the stop tokens are allowed;
 * accepting one terminates it, and after that the stop tokens stay the only ones allowed.
 */
export class ConstrainedOutput {
  private disposed = false
  /** A UTF-8 lead byte the output ends on (its character unfinished), else 0. */
  private pendingLead = 0

  constructor(
    private readonly handle: EmbindMatcher,
    private readonly instance: XgrammarInstance,
    readonly vocabSize: number,
    private readonly stopTokenIds: readonly number[],
    private readonly guard: Utf8Guard,
  ) {}

  /** Disallowed tokens' logits become -Infinity, in place. */
  applyMask(logits: Float32Array, offset: number, vocab: number): void {
    if (this.terminated) maskRow(null, logits, offset, vocab, this.stopTokenIds)
    else {
      this.instance.callSync((b) => {
        const vec = this.handle.GetNextTokenBitmask(this.vocabSize)
        try {
          maskRow(b.vecIntToView(vec), logits, offset, vocab, this.stopTokenIds)
        } finally {
          vec.delete()
        }
      })
    }
    this.guard.apply(this.pendingLead, logits, offset)
  }

  /** xgrammar's bitmask for the next token, a copy (without the UTF-8 guard): bit (id & 31) of word (id >> 5) is set when the token is allowed. */
  mask(): Int32Array {
    return this.instance.callSync((b) => {
      const vec = this.handle.GetNextTokenBitmask(this.vocabSize)
      try {
        return b.vecIntToView(vec).slice()
      } finally {
        vec.delete()
      }
    })
  }

  /** Advance by one token; false if the grammar does not allow it (the state is unchanged). */
  accept(token: number): boolean {
    if (this.terminated) return this.stopTokenIds.includes(token)
    const ok = this.instance.callSync(() => this.handle.AcceptToken(token, false))
    if (ok) this.pendingLead = this.guard.next(this.pendingLead, token)
    return ok
  }

  get terminated(): boolean {
    return !this.instance.broken && this.handle.IsTerminated()
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    if (!this.instance.broken) this.handle.delete()
  }
}

/**
 * A grammar's mask on one row of logits: null (the grammar is complete) keeps only the stop tokens.
 * Once only the stop tokens remain, something before (min_tokens) may have ruled them out too; the
 * grammar wins, so that the draw is not over an empty row.
 */
export function maskRow(mask: Int32Array | null, logits: Float32Array, offset: number, vocab: number, stops: readonly number[]): void {
  if (mask === null) {
    const keep = stops.map((id) => logits[offset + id]!)
    logits.fill(-Infinity, offset, offset + vocab)
    stops.forEach((id, i) => (logits[offset + id] = keep[i]!))
    return
  }
  applyTokenMask(mask, logits, offset, vocab)
  if (onlyStops(mask, stops)) for (const id of stops) if (logits[offset + id] === -Infinity) logits[offset + id] = 0
}

/** Whether the mask allows the stop tokens only (the grammar is complete); stops at the first other bit. */
function onlyStops(mask: Int32Array, stops: readonly number[]): boolean {
  for (let w = 0; w < mask.length; w++) {
    let bits = mask[w]!
    if (bits === 0) continue
    for (const id of stops) if (id >> 5 === w) bits &= ~(1 << (id & 31))
    if (bits !== 0) return false
  }
  return true
}

/** Disallowed tokens' logits become -Infinity, in place. */
export function applyTokenMask(mask: Int32Array, logits: Float32Array, offset: number, vocab: number): void {
  for (let w = 0; w < mask.length; w++) {
    const bits = mask[w]!
    if (bits === -1) continue
    const base = w << 5
    const end = Math.min(32, vocab - base)
    if (bits === 0) {
      logits.fill(-Infinity, offset + base, offset + base + end)
      continue
    }
    for (let b = 0; b < end; b++) if (((bits >>> b) & 1) === 0) logits[offset + base + b] = -Infinity
  }
}
