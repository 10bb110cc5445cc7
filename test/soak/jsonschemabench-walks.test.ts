/**
 * The whole JSONSchemaBench sample through the rewrite, compiled and walked (npm test walks every
 * fourth schema: test/server/schema-rewrite.test.ts): no random output of a rewritten schema fails
 * the schema the client sent.
 */
import t from 'tap'
import { XgrammarInstance, type Xgrammar } from '../../src/structured-output/xgrammar.ts'
import { benchAvailable, rewriteSoundness } from '../../harness/jsonschemabench.ts'

let inst: XgrammarInstance | null = null
async function withXg<T>(fn: (xg: Xgrammar) => Promise<T>): Promise<T> {
  if (!inst || inst.broken) inst = await XgrammarInstance.create()
  return inst.call(fn)
}

t.test('every JSONSchemaBench schema: rewritten, compiled and sound, or refused naming a keyword', { skip: !benchAvailable && 'no ../shared/jsonschemabench' }, async (t) => {
  const r = await rewriteSoundness(withXg, 1)
  for (const refusal of r.refusals) t.match(refusal, /^[^:]+ refused: `[^`]+` at \/\S* /, refusal.slice(0, 200))
  t.same(r.brokenExamples, [], "a schema's own valid examples still validate after the rewrite")
  t.same(r.uncompiled, [], 'every rewritten schema compiles')
  t.comment(`${r.rewritten} rewritten, ${r.refusals.length} refused; ${r.outputs} complete random outputs, ${r.unfinished} unfinished in 1,500 characters`)
  t.same(r.invalid, [], 'no output of a rewritten schema fails the original schema')
  t.equal(r.walked, r.rewritten, 'every rewritten schema walked')
})
