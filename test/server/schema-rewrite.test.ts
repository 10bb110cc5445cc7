/**
 * The JSON Schema rewrite (src/server/http/structured-output/schema-rewrite.ts) over every schema of JSONSchemaBench's
 * sample in shared/: each is either rewritten, and then compiles in xgrammar and generates only what
 * the client's schema accepts (random walks through the compiled grammar, each complete output
 * validated by ajv under the schema's own draft, with ajv-formats), or refused naming a keyword and
 * its JSON pointer. The failing kinds of issue 28 are checked one by one.
 */
import t from 'tap'
import { XgrammarInstance, type Xgrammar } from '../../src/structured-output/xgrammar.ts'
import { jsonSchemaEbnf } from '../../src/structured-output/constraint.ts'
import { rewriteJsonSchema, SchemaRefusal, enforceableSchemaText } from '../../src/server/http/structured-output/schema-rewrite.ts'
import { SpanserveError } from '../../src/errors.ts'
import { benchAvailable, rewriteSoundness } from '../../harness/jsonschemabench.ts'

let inst: XgrammarInstance | null = null
async function withXg<T>(fn: (xg: Xgrammar) => Promise<T>): Promise<T> {
  if (!inst || inst.broken) inst = await XgrammarInstance.create()
  return inst.call(fn)
}

/** Python json.dumps's layout, which the grammar generates. */
function dumps(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(dumps).join(', ')}]`
  if (v && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${dumps(x)}`)
      .join(', ')}}`
  return JSON.stringify(v)
}

async function accepts(schema: unknown, values: unknown[]): Promise<boolean[]> {
  const rewritten = rewriteJsonSchema(schema)
  return withXg(async (xg) => {
    const g = await xg.Grammar.fromEBNF(await jsonSchemaEbnf(xg, JSON.stringify(rewritten)))
    const out = []
    for (const v of values) out.push(await xg.Testings.isGrammarAcceptString(g, dumps(v)))
    g.dispose()
    return out
  })
}

function refusal(schema: unknown): string {
  try {
    rewriteJsonSchema(schema)
  } catch (err) {
    if (err instanceof SchemaRefusal) return err.message
    throw err
  }
  return ''
}

t.test('the failing kinds of issue 28 are enforced', async (t) => {
  const defs = { a: { type: 'object', properties: { x: { type: 'integer' } }, required: ['x'] }, b: { type: 'object', properties: { y: { type: 'string' } }, required: ['y'] } }
  t.same(
    await accepts({ definitions: defs, allOf: [{ $ref: '#/definitions/a' }, { $ref: '#/definitions/b' }] }, [{ x: 1, y: 's' }, { x: 1 }, false]),
    [true, false, false],
    'root allOf of $refs: merged',
  )
  const oneOf = {
    type: 'object',
    oneOf: [
      { properties: { k: { const: 'a' }, x: { type: 'integer' } }, required: ['k', 'x'] },
      { properties: { k: { const: 'b' } }, required: ['k'] },
    ],
  }
  t.same(await accepts(oneOf, [{ k: 'a', x: 1 }, { k: 'b' }, false, { k: 'a' }]), [true, true, false, false], 'oneOf beside type: object: type in each branch')
  t.same(
    await accepts({ type: 'string', format: 'date-time' }, ['2024-01-01T07:60:44Z', '2024-02-30T07:00:00Z', '2024-02-29T07:59:44.5+01:00', '2023-02-29T07:00:00Z']),
    [false, false, true, false],
    'date-time: a correct rule',
  )
  t.same(await accepts({ format: 'date' }, ['2024-02-29', 5]), [true, false], 'format without type: a string')
  t.same(await accepts({ type: 'string', format: 'email' }, ['a@b.co', '"a b"@c.com', 'a@b']), [true, false, false], 'email')
  const deps = { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, dependencies: { a: ['b'] } }
  t.same(await accepts(deps, [{ a: 1 }, { a: 1, b: 2 }, { b: 2 }, {}]), [false, true, true, true], 'draft-04 dependencies')
  t.same(await accepts({ type: 'object', properties: { a: { type: 'integer' } }, anyOf: [{ required: ['a'] }] }, [{ a: 1 }, {}]), [true, false], 'anyOf siblings distributed')
  t.same(await accepts({ type: 'number', maximum: 3 }, [3, 4]), [true, false], 'number bounds')
  t.same(await accepts({ const: { a: [1, 'x'] } }, [{ a: [1, 'x'] }, { a: [1] }]), [true, false], 'an object const')
  t.same(await accepts({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a', 'b'] }, [{ a: 1 }, { a: 1, b: 'x' }]), [false, true], 'a required property not listed')
  t.same(
    await accepts({ type: 'array', items: [{ type: 'integer' }, { type: 'string' }], additionalItems: false }, [
      [1, 'a'],
      [1, 'a', 2],
    ]),
    [true, false],
    'draft-04 tuple',
  )
})

t.test('refusals name the keyword and its pointer', async (t) => {
  t.match(refusal({ type: 'object', properties: { a: { not: { type: 'string' } } } }), /^`not` at \/properties\/a\/not /)
  t.match(refusal({ type: 'object', properties: { a: { type: 'integer' } }, if: { properties: { a: { const: 1 } } }, then: { required: ['a'] } }), /^`if` at \/if /)
  t.match(refusal({ type: 'array', uniqueItems: true }), /^`uniqueItems` at \/uniqueItems /)
  t.match(
    refusal({
      oneOf: [
        { type: 'object', required: ['a'] },
        { type: 'object', required: ['b'] },
      ],
    }),
    /^`oneOf` at \/oneOf /,
  )
  t.match(refusal({ $ref: 'http://example.com/s.json' }), /^`\$ref` at \/ /)
  t.match(refusal({ type: 'string', pattern: '^(?=a)' }), /^`pattern` at \/pattern /)
  t.match(refusal({ type: 'string', format: 'duration' }), /^`format` at \/format /)
  let a: unknown = {}
  for (let i = 0; i < 300; i++) a = { type: 'object', properties: { a } }
  t.match(refusal(a), /nests more than/, 'a deep schema is refused, not recursed through')
  t.match(refusal({ $defs: { r: { anyOf: [{ $ref: '#/$defs/r' }, { type: 'null' }], minimum: 1 } }, $ref: '#/$defs/r' }), /./, 'a recursive $ref beside keywords is bounded')
  const err = (() => {
    try {
      enforceableSchemaText({ not: {} }, 'response_format.json_schema.schema')
    } catch (e) {
      return e
    }
  })()
  t.ok(err instanceof SpanserveError && err.param === 'response_format.json_schema.schema', 'a 400 naming the field')
})

t.test('every JSONSchemaBench schema: rewritten, or refused naming a keyword; every fourth compiled and sound', { skip: !benchAvailable && 'no ../shared/jsonschemabench' }, async (t) => {
  // Compiling and walking all 128 takes a minute on 2 cores: the soak tier does it (test/soak/jsonschemabench-walks.test.ts).
  const r = await rewriteSoundness(withXg, 4)
  for (const refusal of r.refusals) t.match(refusal, /^[^:]+ refused: `[^`]+` at \/\S* /, refusal.slice(0, 200))
  t.same(r.brokenExamples, [], "a schema's own valid examples still validate after the rewrite")
  t.same(r.uncompiled, [], 'every rewritten schema compiles')
  t.comment(`${r.rewritten} rewritten, ${r.refusals.length} refused; ${r.walked} walked: ${r.outputs} complete random outputs, ${r.unfinished} unfinished in 1,500 characters`)
  t.same(r.invalid, [], 'no output of a rewritten schema fails the original schema')
  t.ok(r.rewritten >= 100, 'most of the sample is enforced, not refused')
  t.ok(r.walked >= 30 && r.outputs >= 60, 'a quarter of the sample walked')
})
