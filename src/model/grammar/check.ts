/**
 * Whether a constraint compiles, before the request is queued: the server answers 400 with the
 * engine's reason, as vLLM does, rather than the worker failing the request later. Only the
 * grammar is built (no vocabulary is needed): a few milliseconds. Schemas already found good are
 * remembered (LRU), so a repeated one is not rebuilt.
 */
import { SpanserveError } from '../../errors.ts'
import { toGrammar, constraintKey, type OutputConstraint, type RequestedConstraint } from './constraint.ts'
import { GrammarSyntaxError, XgrammarInstance } from './xgrammar.ts'

const GOOD_KEPT = 256
const good = new Map<string, true>()
let instance: Promise<XgrammarInstance> | null = null

async function engine(): Promise<XgrammarInstance> {
  if (instance) {
    const i = await instance.catch(() => null)
    if (i && !i.broken) return i
  }
  instance = XgrammarInstance.create()
  return instance
}

async function build(c: OutputConstraint): Promise<void> {
  const xg = await engine()
  const grammar = await xg.call((x) => toGrammar(x, c))
  grammar.dispose()
}

const WHAT: Record<OutputConstraint['type'], string> = {
  json_schema: 'the JSON schema',
  json_object: 'the JSON object grammar',
  regex: 'the regular expression',
  choice: 'the choices',
  grammar: 'the grammar',
  structural_tag: 'the structural tag',
  tool_calls: 'the tool call grammar',
}

/** Resolves when the constraint compiles; else a 400 SpanserveError with `param` and the engine's reason. */
export async function checkConstraint({ constraint, param }: RequestedConstraint): Promise<void> {
  const key = constraintKey(constraint)
  if (good.has(key)) {
    good.delete(key)
    good.set(key, true)
    return
  }
  try {
    if (constraint.type === 'tool_calls') {
      // Each function's schema on its own, so the error names the function.
      for (const f of constraint.calls.functions) {
        try {
          await build({ type: 'json_schema', schema: f.parameters })
        } catch (err) {
          if (err instanceof GrammarSyntaxError) err.message = `the parameters of function ${JSON.stringify(f.name)}: ${err.message}`
          throw err
        }
      }
    }
    await build(constraint)
  } catch (err) {
    if (err instanceof GrammarSyntaxError) {
      throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `${param}: ${WHAT[constraint.type]} cannot be compiled: ${err.message}`, param)
    }
    throw err
  }
  good.set(key, true)
  if (good.size > GOOD_KEPT) good.delete(good.keys().next().value!)
}
