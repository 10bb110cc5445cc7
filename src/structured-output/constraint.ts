/**
 * An output constraint as it crosses processes (plain JSON in SamplingParams), and how each kind is
 * handed to xgrammar. The server builds one from the request (request.ts), checks that it compiles
 * (check.ts), and the worker compiles it against the model's vocabulary (engine.ts).
 */
import type { CompiledGrammar, GrammarCompiler } from '@mlc-ai/web-xgrammar'
import type { Xgrammar } from './xgrammar.ts'

export type OutputConstraint = ConstraintKind & {
  /** The request field it came from: the worker compiles it, and names it in a refusal (OpenAI's `param`). */
  param?: string
}

type ConstraintKind =
  /** A JSON Schema, as JSON text. */
  | { type: 'json_schema'; schema: string }
  /** Any JSON object (OpenAI's json_object). */
  | { type: 'json_object' }
  /** A regular expression the whole output matches (vLLM's guided_regex). */
  | { type: 'regex'; pattern: string }
  /** Exactly one of these strings (vLLM's guided_choice). */
  | { type: 'choice'; choices: string[] }
  /** An EBNF grammar in xgrammar's dialect (GBNF-like), root rule `root` (vLLM's guided_grammar). */
  | { type: 'grammar'; grammar: string }
  /** An xgrammar structural tag, as JSON text (vLLM's structured_outputs.structural_tag). */
  | { type: 'structural_tag'; tag: string }
  /** Tool calls in the model's format (tool_choice "required" or a named function): see tool-calls.ts. */
  | { type: 'tool_calls'; calls: ToolCallsConstraint }

export interface ToolCallsConstraint {
  /** The functions a call may name, with their parameter schemas as JSON text. */
  functions: { name: string; parameters: string }[]
  /** At most one call (parallel_tool_calls false, or a named function). */
  single: boolean
  /** The model's tool-call format; Hermes/Qwen's `<tool_call>` blocks is the one there is. */
  format: 'hermes'
}

/** A request's one constraint and the request field it came from (check.ts, request.ts). */
export interface RequestedConstraint {
  constraint: OutputConstraint
  /** The request field it came from (OpenAI's `param` for an error about it). */
  param: string
}

/**
 * JSON layout: one line, Python json.dumps's separators (", " and ": "), no other whitespace. A model
 * cannot pad the output with whitespace forever (with any whitespace allowed, a weak or random model
 * often does), and the output costs the fewest tokens. vLLM allows any whitespace unless told not to.
 */
const ANY_WHITESPACE = false
const ONE_LINE = -1
/** Properties the schema does not name are refused (vLLM's and OpenAI strict mode's behaviour). */
const STRICT_MODE = true

/** The cache key: equal constraints compile to the same grammar. */
export function constraintKey(c: OutputConstraint): string {
  switch (c.type) {
    case 'json_schema':
      return `json_schema\0${c.schema}`
    case 'json_object':
      return 'json_object'
    case 'regex':
      return `regex\0${c.pattern}`
    case 'choice':
      return `choice\0${JSON.stringify(c.choices)}`
    case 'grammar':
      return `grammar\0${c.grammar}`
    case 'structural_tag':
      return `structural_tag\0${c.tag}`
    case 'tool_calls':
      return `tool_calls\0${JSON.stringify(c.calls)}`
  }
}

/** json_object: any object, so not in strict mode (which would allow only `{}`). */
const OBJECT_SCHEMA = '{"type":"object"}'

/** A string as an EBNF literal: printable ASCII as is (quote and backslash escaped), the rest as \u escapes. */
export function ebnfLiteral(s: string): string {
  let out = '"'
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    if (ch === '"' || ch === '\\') out += `\\${ch}`
    else if (cp >= 0x20 && cp < 0x7f) out += ch
    else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, '0')}`
    else out += `\\U${cp.toString(16).padStart(8, '0')}`
  }
  return `${out}"`
}

function choiceGrammar(choices: readonly string[]): string {
  return `root ::= ${choices.map(ebnfLiteral).join(' | ')}`
}

function regexTag(pattern: string): { type: 'structural_tag'; format: { type: 'regex'; pattern: string } } {
  return { type: 'structural_tag', format: { type: 'regex', pattern } }
}

/**
 * xgrammar's EBNF for a JSON Schema, corrected: its converter gives a string with minLength or
 * maxLength the character class `[^"\\\r\n]`, which lets control characters through (invalid
 * JSON; the embedded model draws them). Such strings get JSON's own class instead (no escapes, which
 * is valid JSON too). The grammar is then compiled from the EBNF, as compileJSONSchema does itself.
 */
export async function jsonSchemaEbnf(xg: Xgrammar, schema: string, strict = STRICT_MODE): Promise<string> {
  const ebnf = await xg.Testings._jsonSchemaToEBNF(schema, ANY_WHITESPACE, ONE_LINE, undefined, strict)
  return ebnf.replace(LENGTH_STRING, (_, min: string, comma: string | undefined, max: string | undefined) => {
    const lo = Number(min)
    const hi = comma === undefined ? lo : max === '' ? null : Number(max)
    return boundedRepeat(JSON_STRING_CLASS, lo, hi)
  })
}
/** A string with a length bound, as xgrammar writes it: the class, then {n}, {m,} or {m,n}. */
const LENGTH_STRING = /\[\^"\\\\\\r\\n\]\{(\d+)(?:(,)(\d*))?\}/g
const JSON_STRING_CLASS = '[^\\0-\\x1f"\\\\]'

/**
 * xgrammar matches a repetition count above 128 on a slow path: with a string's minLength of 2,000,
 * accepting a token took 18 us at the median instead of 1.5 (bench/grammar-micro.ts). The same
 * language written as nested repetitions of at most 128 each stays on the fast path.
 */
const FAST_REPEAT = 128

/** `x` between min and max times (max null: no bound), in repetitions of at most FAST_REPEAT. */
export function boundedRepeat(x: string, min: number, max: number | null): string {
  if (min <= FAST_REPEAT && (max === null || max <= FAST_REPEAT)) return `${x}{${min},${max ?? ''}}`
  return seq(exactly(x, min), max === null ? `${x}*` : upTo(x, max - min))
}

/** EBNF items in sequence; "" (the empty string) when there are none. */
function seq(...items: string[]): string {
  return items.filter((i) => i !== '').join(' ') || '""'
}

function exactly(x: string, n: number): string {
  if (n <= FAST_REPEAT) return n === 0 ? '' : n === 1 ? x : `${x}{${n}}`
  return seq(exactly(`(${x}{${FAST_REPEAT}})`, Math.floor(n / FAST_REPEAT)), exactly(x, n % FAST_REPEAT))
}

/** `x` 0 to n times: fewer than q whole chunks and a part of one, or q chunks and up to the rest. */
function upTo(x: string, n: number): string {
  if (n <= FAST_REPEAT) return n === 0 ? '' : `${x}{0,${n}}`
  const q = Math.floor(n / FAST_REPEAT)
  const below = seq(upTo(`(${x}{${FAST_REPEAT}})`, q - 1), `${x}{0,${FAST_REPEAT - 1}}`)
  const at = seq(exactly(x, q * FAST_REPEAT), upTo(x, n % FAST_REPEAT))
  return `((${below}) | (${at}))`
}

/**
 * Hermes tool calls: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>` blocks, one per
 * line, at least one; each function's arguments constrained by its parameter schema, laid out as
 * the other JSON here is (a structural tag's own json_schema content would allow any whitespace).
 */
async function toolCallsTag(xg: Xgrammar, calls: ToolCallsConstraint): Promise<string> {
  const tags = []
  for (const f of calls.functions) {
    const args = await jsonSchemaEbnf(xg, f.parameters)
    tags.push({ type: 'tag', begin: `<tool_call>\n{"name": ${JSON.stringify(f.name)}, "arguments": `, content: { type: 'grammar', grammar: args }, end: '}\n</tool_call>' })
  }
  return JSON.stringify({
    type: 'structural_tag',
    format: { type: 'tags_with_separator', tags, separator: '\n', at_least_one: true, stop_after_first: calls.single },
  })
}

/** The constraint as xgrammar source: EBNF text, or a structural tag (JSON text). */
async function source(xg: Xgrammar, c: OutputConstraint): Promise<{ ebnf: string } | { tag: string }> {
  switch (c.type) {
    case 'json_schema':
      return { ebnf: await jsonSchemaEbnf(xg, c.schema) }
    case 'json_object':
      return { ebnf: await jsonSchemaEbnf(xg, OBJECT_SCHEMA, false) }
    case 'regex':
      return { tag: JSON.stringify(regexTag(c.pattern)) }
    case 'choice':
      return { ebnf: choiceGrammar(c.choices) }
    case 'grammar':
      return { ebnf: c.grammar }
    case 'structural_tag':
      return { tag: c.tag }
    case 'tool_calls':
      return { tag: await toolCallsTag(xg, c.calls) }
  }
}

/** The constraint compiled against a vocabulary: what matchers are made from. */
export async function compileConstraint(compiler: GrammarCompiler, c: OutputConstraint, xg: Xgrammar): Promise<CompiledGrammar> {
  const src = await source(xg, c)
  return 'ebnf' in src ? compiler.compileGrammar(src.ebnf) : compiler.compileStructuralTag(src.tag)
}
