/**
 * Loads xgrammar (@mlc-ai/web-xgrammar: the grammar engine of vLLM and SGLang, compiled to
 * WebAssembly) into Node, and keeps an instance usable after the engine rejects its input.
 *
 * Three things the package does not do for Node, done here:
 * - Its lib/index.js is a UMD bundle in a `"type": "module"` package, so `import` runs it as ESM,
 *   where its `require` is undefined and it throws. It is compiled here as the CommonJS it is.
 * - It reports a bad schema or grammar by printing `[FATAL] file.cc:line: message` to stderr and
 *   aborting the WebAssembly instance (a RuntimeError "Aborted()"). The message is caught (the
 *   instance's stderr is bound to a function of ours while it initialises) and becomes the error's;
 *   an aborted instance is left behind (its stack is not unwound: a few thousand aborts later it
 *   faults), and the next call gets a fresh one.
 * - Its API is async (each call first awaits the engine's initialisation), while the sampler needs a
 *   token mask synchronously, in the step. The bundle's initialised binding is exposed (one line
 *   added to the bundle as it is compiled) for the few calls made per token.
 */
import { readFileSync } from 'node:fs'
import { createRequire, Module } from 'node:module'
import { dirname } from 'node:path'
import type xgrammarDefault from '@mlc-ai/web-xgrammar'

export type Xgrammar = typeof xgrammarDefault

/** The Embind objects the per-token calls use (see ConstrainedOutput). */
export interface XgrammarBinding {
  GrammarMatcher: new (compiled: unknown, stopTokens: unknown, terminateWithoutStop: boolean, maxRollback: number) => EmbindMatcher
  vecIntFromJSArray(ids: readonly number[]): unknown
  /** A view of the vector's data in the instance's memory: valid until the vector is deleted or memory grows. */
  vecIntToView(vec: EmbindVector): Int32Array
}

export interface EmbindVector {
  delete(): void
}

export interface EmbindMatcher {
  AcceptToken(id: number, verbose: boolean): boolean
  GetNextTokenBitmask(vocabSize: number): EmbindVector
  IsTerminated(): boolean
  delete(): void
}

/** The engine refused a schema, regex or grammar; `message` is its own reason. */
export class GrammarSyntaxError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GrammarSyntaxError'
  }
}

const require = createRequire(import.meta.url)

/** Where the binding is exposed: after the bundle's exports (it is in the same scope). */
const EXPORTS_END = 'exports.default = index;'

function compileBundle(): Xgrammar & { __binding(): XgrammarBinding | null } {
  const filename = require.resolve('@mlc-ai/web-xgrammar')
  const source = readFileSync(filename, 'utf8')
  if (!source.includes(EXPORTS_END)) throw new Error(`${filename}: this version of @mlc-ai/web-xgrammar is not one spanserve knows how to load (no "${EXPORTS_END}")`)
  type CjsModule = Module & { filename: string; paths: string[]; _compile(source: string, filename: string): void; exports: Xgrammar & { __binding(): XgrammarBinding | null } }
  const NodeModule = Module as unknown as { new (id: string): CjsModule; _nodeModulePaths(dir: string): string[] }
  const m = new NodeModule(filename)
  m.filename = filename
  m.paths = NodeModule._nodeModulePaths(dirname(filename))
  m._compile(source.replace(EXPORTS_END, `${EXPORTS_END} exports.__binding = () => binding;`), filename)
  return m.exports
}

/** The reason in an xgrammar fatal line, without its source location or check expression. */
export function cleanMessage(lines: readonly string[]): string {
  const fatal = lines.find((l) => l.includes('[FATAL]')) ?? lines.find((l) => !l.startsWith('Aborted(')) ?? ''
  let text = fatal.replace(/^.*?\[FATAL\]\s*\S+?:\d+:\s*/, '')
  const failed = text.indexOf(' is false: ')
  if (text.startsWith('Check failed:') && failed >= 0) text = text.slice(failed + ' is false: '.length)
  return text.trim() || 'rejected by the grammar engine'
}

/** WebAssembly.Exception is in Node 22's lib types, not in those this project compiles against. */
function isWasmException(err: unknown): boolean {
  const WasmException = (WebAssembly as { Exception?: new (...args: never[]) => unknown }).Exception
  return WasmException !== undefined && err instanceof WasmException
}

/** A call reached an instance that had aborted: the caller takes a fresh one. */
export class GrammarEngineBroken extends Error {
  constructor() {
    super('xgrammar instance used after it aborted')
    this.name = 'GrammarEngineBroken'
  }
}

/** One WebAssembly instance of xgrammar; `broken` once it aborted. */
export class XgrammarInstance {
  broken = false
  private captured: string[] | null = null
  /** Calls in turn: each awaits the engine's initialisation, so two could otherwise interleave their stderr. */
  private turn: Promise<unknown> = Promise.resolve()

  private constructor(
    readonly xg: Xgrammar,
    /** Set once the instance has initialised (create() waits for that). */
    readonly binding: XgrammarBinding,
  ) {}

  static async create(): Promise<XgrammarInstance> {
    const xg = compileBundle()
    // The instance binds console.error as its stderr when it initialises (on its first call).
    const sink: { instance: XgrammarInstance | null } = { instance: null }
    const original = console.error
    console.error = (...args: unknown[]) => {
      const captured = sink.instance?.captured
      if (captured) captured.push(args.map(String).join(' '))
      else original(...args)
    }
    try {
      ;(await xg.Grammar.builtinJSONGrammar()).dispose()
    } finally {
      console.error = original
    }
    const binding = xg.__binding()
    if (binding === null) throw new Error('xgrammar did not initialise')
    sink.instance = new XgrammarInstance(xg, binding)
    return sink.instance
  }

  /** An engine refusal (an abort, or fatal lines it printed) breaks this instance and names the reason; other errors pass. */
  private rethrow(err: unknown, lines: readonly string[]): never {
    // A C++ exception crosses into JavaScript as a bare number (its address) or a WebAssembly.Exception: the engine refused.
    if (err instanceof WebAssembly.RuntimeError || typeof err === 'number' || isWasmException(err) || lines.length > 0) {
      this.broken = true
      throw new GrammarSyntaxError(cleanMessage(lines))
    }
    throw err
  }

  /** The instance's WebAssembly memory in bytes. */
  memoryBytes(): number {
    return (this.binding as unknown as { HEAP8: Int8Array }).HEAP8.buffer.byteLength
  }

  /** A synchronous engine call (per token): as call(), without waiting its turn. */
  callSync<T>(fn: (binding: XgrammarBinding) => T): T {
    if (this.broken) throw new GrammarEngineBroken()
    const lines: string[] = []
    // An async call may be between its awaits: its capture resumes after this one.
    const outer = this.captured
    this.captured = lines
    try {
      return fn(this.binding)
    } catch (err) {
      this.rethrow(err, lines)
    } finally {
      this.captured = outer
    }
  }

  /**
   * Run one engine call; a refusal (an abort) becomes a GrammarSyntaxError with the engine's reason
   * and marks this instance broken. Calls are synchronous inside the engine, so one runs at a time.
   */
  call<T>(fn: (xg: Xgrammar) => Promise<T> | T): Promise<T> {
    const result = this.turn.then(() => this.callNow(fn))
    this.turn = result.catch(() => undefined)
    return result
  }

  private async callNow<T>(fn: (xg: Xgrammar) => Promise<T> | T): Promise<T> {
    if (this.broken) throw new GrammarEngineBroken()
    const lines: string[] = []
    this.captured = lines
    try {
      return await fn(this.xg)
    } catch (err) {
      this.rethrow(err, lines)
    } finally {
      this.captured = null
    }
  }
}
