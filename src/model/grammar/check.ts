/**
 * Whether a constraint compiles, before the request is queued: the server answers 400 with the
 * engine's reason, as vLLM does, rather than the worker failing the request later. Only the
 * grammar is built (no vocabulary is needed): a few milliseconds. Constraints already judged are
 * remembered (LRU), so a repeated one is not rebuilt: a refusal costs more (the engine instance it
 * aborted is replaced, some 30 ms), and a client repeating a bad schema pays it once.
 */
import { SpanserveError } from '../../errors.ts'
import { toGrammar, constraintKey, type OutputConstraint, type RequestedConstraint } from './constraint.ts'
import { GrammarSyntaxError, XgrammarInstance } from './xgrammar.ts'

const KEPT = 256
/** Constraint key → null (compiles) or the engine's reason for refusing it. */
const judged = new Map<string, string | null>()
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
  let reason = judged.get(key)
  if (reason !== undefined) {
    judged.delete(key)
  } else {
    reason = await refusal(constraint)
  }
  judged.set(key, reason)
  if (judged.size > KEPT) judged.delete(judged.keys().next().value!)
  if (reason !== null) throw new SpanserveError('SPANSERVE_ERR_INVALID_REQUEST', `${param}: ${WHAT[constraint.type]} cannot be compiled: ${reason}`, param)
}

/** null when the constraint compiles, else the engine's reason. */
async function refusal(constraint: OutputConstraint): Promise<string | null> {
  try {
    if (constraint.type === 'tool_calls') {
      // Each function's schema on its own, so the reason names the function.
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
    return null
  } catch (err) {
    if (err instanceof GrammarSyntaxError) return err.message
    throw err
  }
}
