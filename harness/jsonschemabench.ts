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
