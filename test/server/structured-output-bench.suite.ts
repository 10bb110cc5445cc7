/**
 * Issue 28: structured output never returns what the schema rejects. A few JSONSchemaBench schemas
 * (from ../shared/jsonschemabench) and the kinds that used to slip through, through the real server:
 * each output passes ajv (with ajv-formats) or the request is a 400 naming the keyword and pointer.
 * `length` finishes (the embedded model loops) are counted apart, not as failures.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { sharedServer } from '../helpers/shared-server.ts'
import { BENCH_DIR, benchAvailable, runSchema, type Outcome } from '../../harness/jsonschemabench.ts'

const FILES = ['Github_easy/o90216.json', 'Github_easy/o10526.json', 'Github_easy/o79609.json', 'Github_hard/o55657.json', 'WashingtonPost/wp_11_Normalized.json', 'JsonSchemaStore/size-limit.json']
const INLINE: Record<string, unknown> = {
  'oneOf beside type: object': {
    type: 'object',
    oneOf: [
      { properties: { kind: { const: 'a' }, n: { type: 'integer' } }, required: ['kind', 'n'] },
      { properties: { kind: { const: 'b' } }, required: ['kind'] },
    ],
  },
  'format without type': { type: 'object', properties: { at: { format: 'date-time' } }, required: ['at'] },
  'draft-04 dependencies': { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'string', maxLength: 4 } }, dependencies: { a: ['b'] }, required: ['a'] },
  'not (refused)': { type: 'object', properties: { a: { not: { type: 'null' } } } },
}

t.test('each output validates or the schema is refused naming a keyword', { skip: !benchAvailable && 'no ../shared/jsonschemabench' }, async (t) => {
  const server = await sharedServer()
  const schemas: [string, unknown][] = [...FILES.map((f): [string, unknown] => [f, JSON.parse(readFileSync(join(BENCH_DIR, f), 'utf8'))]), ...Object.entries(INLINE)]
  const counts: Record<Outcome, number> = { valid: 0, invalid: 0, refused: 0, length: 0, error: 0 }
  for (const [name, schema] of schemas) {
    const run = await runSchema(server.url, schema, 400)
    counts[run.outcome]++
    t.ok(run.outcome !== 'invalid' && run.outcome !== 'error', `${name}: ${run.outcome} ${run.detail.slice(0, 200)}`)
  }
  t.comment(JSON.stringify(counts))
  t.equal(counts.invalid, 0, '0 outputs that fail validation')
  t.ok(counts.refused >= 1 && counts.valid + counts.length >= 1)
})
