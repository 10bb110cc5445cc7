/**
 * JSONSchemaBench's sample in shared/ (beside the checkout, never copied in), and ajv validators for
 * its schemas as their own draft defines them, with ajv-formats' full formats: what an output must
 * pass. Used by the rewrite's unit test, the server test and bench/jsonschemabench.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv, type ValidateFunction } from 'ajv'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { Ajv2020 } from 'ajv/dist/2020.js'
import AjvDraft04 from 'ajv-draft-04'
import addFormats from 'ajv-formats'
import { ROOT } from './server.ts'
import type { Xgrammar } from '../src/structured-output/xgrammar.ts'
import { jsonSchemaEbnf } from '../src/structured-output/constraint.ts'
import { rewriteJsonSchema, SchemaRefusal } from '../src/server/http/structured-output/schema-rewrite.ts'

export const BENCH_DIR = join(ROOT, '../shared/jsonschemabench')
export const benchAvailable = existsSync(BENCH_DIR)

export interface BenchSchema {
  dataset: string
  file: string
  schema: unknown
}

export function benchSchemas(): BenchSchema[] {
  const out: BenchSchema[] = []
  for (const dataset of readdirSync(BENCH_DIR).sort()) {
    if (dataset.endsWith('.md')) continue
    for (const file of readdirSync(join(BENCH_DIR, dataset)).sort()) {
      out.push({ dataset, file, schema: JSON.parse(readFileSync(join(BENCH_DIR, dataset, file), 'utf8')) })
    }
  }
  return out
}

type AnyAjv = { compile(s: object | boolean): ValidateFunction }
const OPTIONS = { strict: false, validateSchema: false, logger: false, allErrors: false } as const
function make(C: new (o: object) => AnyAjv): AnyAjv {
  const a = new C(OPTIONS)
  ;(addFormats as unknown as (a: AnyAjv) => void)(a)
  return a
}
let ajvs: Record<string, AnyAjv> | null = null

/** A validator for the schema under the draft its `$schema` names (draft-07 when none). */
export function validatorFor(schema: unknown): ValidateFunction {
  ajvs ??= { '04': make(AjvDraft04 as never), '07': make(Ajv as never), '2019': make(Ajv2019 as never), '2020': make(Ajv2020 as never) }
  const declared = typeof schema === 'object' && schema !== null ? String((schema as { $schema?: unknown }).$schema ?? '') : ''
  const draft = declared.includes('draft-04') ? '04' : declared.includes('2019-09') ? '2019' : declared.includes('2020-12') ? '2020' : '07'
  // The same schema object compiled twice would clash on its $id: a copy without ids each time.
  const copy = JSON.parse(JSON.stringify(schema, (k, v) => ((k === '$id' || k === 'id') && typeof v === 'string' ? undefined : v))) as object
  return ajvs[draft]!.compile(copy)
}

/** A validator for a rewritten schema (2020-12 keywords: prefixItems, $defs). */
export function rewrittenValidator(schema: unknown): ValidateFunction {
  ajvs ??= { '04': make(AjvDraft04 as never), '07': make(Ajv as never), '2019': make(Ajv2019 as never), '2020': make(Ajv2020 as never) }
  return ajvs['2020']!.compile(schema as object)
}

export type Outcome = 'valid' | 'invalid' | 'refused' | 'length' | 'error'

export interface SchemaRun {
  outcome: Outcome
  /** The 400's message, the output, or what went wrong. */
  detail: string
  ms: number
}

/**
 * One schema through the server's chat route: refused (a 400 naming a keyword and its pointer),
 * cut by max_tokens (`length`, not a failure: the embedded model loops), or finished and validated.
 */
export async function runSchema(url: string, schema: unknown, maxTokens: number, seed = 1): Promise<SchemaRun> {
  const t0 = performance.now()
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'default',
      messages: [{ role: 'user', content: 'Write a JSON document.' }],
      response_format: { type: 'json_schema', json_schema: { name: 's', strict: true, schema } },
      max_tokens: maxTokens,
      temperature: 1,
      seed,
    }),
  })
  const ms = performance.now() - t0
  const body = (await res.json()) as { error?: { message: string; param: string }; choices?: { finish_reason: string; message: { content: string } }[] }
  if (res.status === 400 && body.error) {
    const named = body.error.param === 'response_format.json_schema.schema' && /`[^`]+` at \/\S*/.test(body.error.message)
    return { outcome: named ? 'refused' : 'error', detail: body.error.message, ms }
  }
  if (res.status !== 200 || !body.choices) return { outcome: 'error', detail: `${res.status} ${JSON.stringify(body).slice(0, 300)}`, ms }
  const choice = body.choices[0]!
  if (choice.finish_reason === 'length') return { outcome: 'length', detail: choice.message.content.slice(0, 200), ms }
  let value: unknown
  try {
    value = JSON.parse(choice.message.content)
  } catch {
    return { outcome: 'invalid', detail: `not JSON: ${choice.message.content.slice(0, 300)}`, ms }
  }
  const validate = validatorFor(schema)
  return validate(value) ? { outcome: 'valid', detail: '', ms } : { outcome: 'invalid', detail: `${JSON.stringify(validate.errors?.[0])} in ${choice.message.content.slice(0, 300)}`, ms }
}

/** Random walks through the compiled grammar over a one-character vocabulary, biased to end. */
export async function walks(xg: Xgrammar, ebnf: string, n: number): Promise<(string | null)[]> {
  const vocab = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))
  const eos = vocab.length
  const info = await xg.TokenizerInfo.createTokenizerInfo([...vocab, '</s>'], 'RAW', false, vocab.length + 1, [eos])
  const compiler = await xg.GrammarCompiler.createGrammarCompiler(info)
  const compiled = await compiler.compileGrammar(ebnf)
  const outs: (string | null)[] = []
  let seed = 7
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  for (let w = 0; w < n; w++) {
    const m = await xg.GrammarMatcher.createGrammarMatcher(compiled)
    let text = ''
    let done = false
    for (let step = 0; step < 1500 && !done; step++) {
      const mask = await m.getNextTokenBitmask()
      const allowed: number[] = []
      for (let id = 0; id <= eos; id++) if ((mask[id >> 5]! >>> (id & 31)) & 1) allowed.push(id)
      if (allowed.length === 0) break
      const weight = (id: number) => (id === eos ? 1000 : '"}]'.includes(vocab[id]!) ? 30 : 1)
      let r = rand() * allowed.reduce((s, id) => s + weight(id), 0)
      let pick = allowed[0]!
      for (const id of allowed)
        if ((r -= weight(id)) <= 0) {
          pick = id
          break
        }
      m.acceptToken(pick)
      if (pick === eos) done = true
      else text += vocab[pick]
    }
    m.dispose()
    outs.push(done ? text : null)
  }
  compiled.dispose()
  compiler.dispose()
  info.dispose()
  return outs
}

export interface RewriteSoundness {
  rewritten: number
  /** `dataset/file refused: message`, one per refused schema. */
  refusals: string[]
  /** Schemas whose own valid examples fail after the rewrite. */
  brokenExamples: string[]
  /** Rewritten schemas that do not compile. */
  uncompiled: string[]
  walked: number
  outputs: number
  unfinished: number
  /** Complete walk outputs that fail the original schema. */
  invalid: string[]
}

/**
 * Every schema of the sample rewritten (or refused), and every `every`-th rewritten one compiled
 * and walked 4 times at random through its grammar, each complete output validated by ajv under
 * the original schema's own draft. `run` gives access to one xgrammar instance.
 */
export async function rewriteSoundness(run: <T>(fn: (xg: Xgrammar) => Promise<T>) => Promise<T>, every: number): Promise<RewriteSoundness> {
  const r: RewriteSoundness = { rewritten: 0, refusals: [], brokenExamples: [], uncompiled: [], walked: 0, outputs: 0, unfinished: 0, invalid: [] }
  for (const { dataset, file, schema } of benchSchemas()) {
    const name = `${dataset}/${file}`
    let out: unknown
    try {
      out = rewriteJsonSchema(schema)
    } catch (err) {
      r.refusals.push(`${name} refused: ${err instanceof SchemaRefusal ? err.message : `not a refusal: ${String(err)}`}`)
      continue
    }
    r.rewritten++
    const validate = validatorFor(schema)
    const after = rewrittenValidator(out)
    // The schema's own examples: valid before the rewrite means valid after.
    for (const ex of (schema as { examples?: unknown[] }).examples ?? []) if (validate(ex) && !after(ex)) r.brokenExamples.push(name)
    if ((r.rewritten - 1) % every !== 0) continue
    r.walked++
    let texts: (string | null)[] = []
    try {
      texts = await run(async (xg) => walks(xg, await jsonSchemaEbnf(xg, JSON.stringify(out)), 4))
    } catch (err) {
      r.uncompiled.push(`${name}: ${(err as Error).message}`)
      continue
    }
    for (const text of texts) {
      if (text === null) {
        r.unfinished++
        continue
      }
      r.outputs++
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch {
        r.invalid.push(`${name}: not JSON: ${text.slice(0, 200)}`)
        continue
      }
      if (!validate(value)) r.invalid.push(`${name}: ${JSON.stringify(validate.errors?.[0])} in ${text.slice(0, 300)}`)
    }
  }
  return r
}
