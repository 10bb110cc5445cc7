// The worker's grammar threads (src/structured-output/pool.ts) over the embedded model's real vocabulary
// and real xgrammar threads: refusals name the field and the reason, a compile past its budget is a
// CONSTRAINT_TOO_COMPLEX refusal while other requests' masks keep coming, masks from a thread equal
// the in-thread engine's, and a thread whose memory grew past its bound is ended once idle.
import t from 'tap'
import { join } from 'node:path'
import { ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { GrammarPool } from '../../src/structured-output/pool.ts'
import { GrammarEngine, Utf8Guard } from '../../src/structured-output/engine.ts'
import { readGrammarVocab } from '../../src/structured-output/vocab.ts'
import { requestedConstraint } from '../../src/server/http/structured-output/request.ts'
import type { OutputConstraint } from '../../src/structured-output/constraint.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'

const info = readModelInfo(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR }))
const start = { tokenizerPath: join(info.dir, 'tokenizer.json'), vocabSize: info.vocabSize, stopTokenIds: [...info.eosTokenIds] }
const vocab = readGrammarVocab(start.tokenizerPath, start.vocabSize, start.stopTokenIds)
const guard = new Utf8Guard(vocab)
const newPool = (over: Partial<ConstructorParameters<typeof GrammarPool>[0]> = {}) => new GrammarPool({ start, guard, threads: 3, compileTimeoutMs: 10_000, threadMemoryBytes: 512 * 2 ** 20, ...over })

const person = JSON.stringify({
  type: 'object',
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 } },
  required: ['name', 'age'],
  additionalProperties: false,
})
/** The request body's constraint as the server sends it (with its field). */
const fromBody = (body: object): OutputConstraint => {
  const r = requestedConstraint(body)!
  return { ...r.constraint, param: r.param }
}

t.test('a constraint the engine refuses is a 400 naming the field and the reason; the threads go on', async (t) => {
  const pool = newPool()
  t.teardown(() => pool.close())
  // As the server sends them (the schema rewrite in request.ts refuses some of these itself first:
  // here they reach the engine as they are, to see its reasons named).
  const js = (schema: object, param: string): OutputConstraint => ({ type: 'json_schema', schema: JSON.stringify(schema), param })
  const cases: [OutputConstraint, string, RegExp][] = [
    [js({ type: 'objec' }, 'response_format.json_schema.schema'), 'response_format.json_schema.schema', /Unsupported type "objec"/],
    [js({ $ref: '#/$defs/missing' }, 'response_format.json_schema.schema'), 'response_format.json_schema.schema', /missing/],
    [fromBody({ guided_regex: '(?<=a)b' }), 'guided_regex', /Lookbehind/],
    [fromBody({ guided_grammar: 'root ::= undefined_rule' }), 'guided_grammar', /undefined_rule/],
    [js({ type: 'string', pattern: '(' }, 'structured_outputs.json'), 'structured_outputs.json', /./],
    [{ type: 'tool_calls', calls: { functions: [{ name: 'f', parameters: '{"type":"objec"}' }], single: true, format: 'hermes' }, param: 'tools' }, 'tools', /function "f".*Unsupported type/],
  ]
  let n = 0
  for (const [constraint, param, reason] of cases) {
    const v = await pool.prepare(`r${n++}`, constraint)
    t.equal(v.ok, false, `${JSON.stringify(constraint)} refused`)
    if (v.ok) continue
    t.equal(v.code, 'SPANSERVE_ERR_INVALID_REQUEST')
    t.equal(v.param, param)
    t.match(v.message, reason)
    t.ok(v.message.startsWith(`${param}: `), 'the message names the field')
  }
  // Each refusal aborts an xgrammar instance: many distinct ones in a row must not wear a thread out.
  for (let i = 0; i < 40; i++) {
    const v = await pool.prepare(`k${i}`, { type: 'json_schema', schema: JSON.stringify({ type: `kind${i}` }) })
    t.match(v.ok ? '' : v.message, `Unsupported type "kind${i}"`)
  }
  const ok = await pool.prepare('good', { type: 'json_schema', schema: person })
  t.ok(ok.ok, 'and the next good one compiles')
  pool.release('good')
})

t.test('a compile past its budget is refused as too complex and abandoned, while other sequences get their masks', async (t) => {
  // Two compiles at once: the costly one and the small one beside it.
  const pool = newPool({ compileTimeoutMs: 3000, compiles: 2 })
  t.teardown(() => pool.close())
  t.ok((await pool.prepare('running', { type: 'json_schema', schema: person })).ok)
  const running = pool.matcher('running')
  // 75 bytes that take about 1 ms per unit of maxLength to compile: minutes.
  const costly = pool.prepare('costly', fromBody({ response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'string', maxLength: 90000 } } } }))
  let settled = false
  void costly.then(() => (settled = true))
  // Meanwhile a new small constraint compiles in a third thread...
  const small = pool.prepare('small', { type: 'regex', pattern: '[a-z]{1,8}' })
  let smallDone = false
  void small.then(() => (smallDone = true))
  // ...and the running sequence's masks keep coming from its own thread.
  const logits = new Float32Array(info.vocabSize)
  let steps = 0
  let masked = 0
  while (!settled) {
    logits.fill(0)
    running.apply(logits, 0, info.vocabSize)
    if (logits.some((v) => v !== -Infinity) && logits.some((v) => v === -Infinity)) masked++
    steps++
    await new Promise((r) => setTimeout(r, 5))
  }
  t.ok(steps > 3, `masks were served while the costly grammar compiled (${steps} steps)`)
  t.equal(masked, steps, 'each a real mask')
  t.ok(smallDone, 'a small constraint compiled meanwhile')
  t.ok((await small).ok)
  const v = await costly
  t.equal(v.ok, false)
  if (!v.ok) {
    t.equal(v.code, 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX')
    t.equal(v.param, 'response_format.json_schema.schema')
    t.match(v.message, /^response_format\.json_schema\.schema: the JSON schema takes longer than 3 s to compile/)
  }
  const threads = pool.stats().threads
  const again = await pool.prepare('again', fromBody({ guided_json: { type: 'string', maxLength: 90000 } }))
  t.equal(again.ok ? null : again.code, 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX', 'a repeat is refused from memory')
  t.equal(pool.stats().threads, threads, 'without a thread to compile it')
  pool.release('running')
  pool.release('small')
})

t.test('masks from a grammar thread equal the engine run in place, token after token', async (t) => {
  const pool = newPool()
  t.teardown(() => pool.close())
  const engine = new GrammarEngine(vocab)
  const c: OutputConstraint = { type: 'json_schema', schema: person }
  t.ok((await pool.prepare('a', c)).ok)
  const remote = pool.matcher('a')
  const local = engine.matcher(await engine.prepare(c))
  const a = new Float32Array(info.vocabSize)
  const b = new Float32Array(info.vocabSize)
  let taken = 0
  for (let step = 0; step < 60; step++) {
    a.fill(0)
    b.fill(0)
    remote.apply(a, 0, info.vocabSize)
    local.applyMask(b, 0, info.vocabSize)
    t.same(a, b, `step ${step}`) || t.bailout()
    // The last allowed token, so that the walk goes somewhere other than the first choice each time.
    let token = -1
    for (let i = a.length - 1; i >= 0; i--) if (a[i] !== -Infinity) (token = i), (i = -1)
    if (start.stopTokenIds.includes(token)) break
    remote.accept(token)
    local.accept(token)
    taken++
  }
  t.ok(taken > 3, `${taken} tokens walked`)
  local.dispose()
  pool.release('a')
})

t.test('a thread whose memory grew past its bound is ended once its requests are done', async (t) => {
  const pool = newPool({ threadMemoryBytes: 1 })
  t.teardown(() => pool.close())
  t.ok((await pool.prepare('a', { type: 'json_schema', schema: person })).ok)
  t.equal(pool.stats().threads, 1)
  t.ok(pool.stats().memoryBytes > 1)
  pool.release('a')
  t.equal(pool.stats().threads, 0, 'ended, its memory given back')
  t.ok((await pool.prepare('b', { type: 'json_schema', schema: person })).ok, 'and a fresh one serves the next request')
  pool.release('b')
})

t.test('one constraint asked for by several requests at once is compiled once', async (t) => {
  const pool = newPool()
  t.teardown(() => pool.close())
  const c: OutputConstraint = { type: 'json_schema', schema: person }
  const verdicts = await Promise.all(['n0', 'n1', 'n2', 'n3'].map((rid) => pool.prepare(rid, c)))
  t.same(
    verdicts.map((v) => v.ok && v.cacheHit),
    [false, true, true, true],
    'the first compiles, the others wait for it and hit',
  )
  t.equal(pool.stats().threads, 1, 'in one thread')
  for (const rid of ['n0', 'n1', 'n2', 'n3']) pool.release(rid)
})

t.test("compiles beyond the pool's bound wait for one to end; cache hits do not wait", async (t) => {
  const pool = newPool({ compileTimeoutMs: 2000, compiles: 1 })
  t.teardown(() => pool.close())
  t.ok((await pool.prepare('cached', { type: 'json_schema', schema: person })).ok)
  let costlyDone = false
  const costly = pool.prepare('costly', { type: 'json_schema', schema: JSON.stringify({ type: 'string', maxLength: 90000 }) }).then((v) => ((costlyDone = true), v))
  const hit = await pool.prepare('hit', { type: 'json_schema', schema: person })
  t.ok(hit.ok && hit.cacheHit && !costlyDone, 'a cached constraint is served while the costly one compiles')
  const small = await pool.prepare('small', { type: 'regex', pattern: '[a-z]{1,8}' })
  t.ok(small.ok && costlyDone, 'a new one compiled only once the costly one ended')
  t.equal((await costly).ok ? null : 'refused', 'refused')
  for (const rid of ['cached', 'hit', 'small']) pool.release(rid)
})
