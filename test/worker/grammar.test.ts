/**
 * Constrained decoding in the worker, on the embedded model's real ONNX Runtime session: sequences
 * with different constraints (and one without) decoded together in one batch, greedy and sampled,
 * each output valid for its own constraint and ended by EOS once complete, however little the
 * model knows of JSON; the compiled grammar comes from the cache the second time.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { Ajv } from 'ajv'
import { Tokenizer } from '@huggingface/tokenizers'
import { ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { openSession } from '../../src/worker/session.ts'
import { ModelRunner } from '../../src/worker/runner.ts'
import { closeGrammars, prepareGrammar } from '../../src/worker/grammar.ts'
import type { PrefillEntry } from '../../src/ipc/messages.ts'
import type { SamplingParams } from '../../src/sampling/params.ts'
import { forWorker } from '../../src/sampling/for-worker.ts'
import type { OutputConstraint } from '../../src/structured-output/constraint.ts'
import { TEST_CACHE_DIR } from '../../harness/server.ts'

const info = readModelInfo(await ensureModel({ preset: 'default', cacheDir: TEST_CACHE_DIR }))
const { session } = await openSession(info.onnxPath, 'cpu', { intraOp: 0, spinning: false, memArena: false }, pino({ level: 'silent' }))
t.teardown(() => session.release())
t.teardown(() => closeGrammars())
const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(info.dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(info.dir, 'tokenizer_config.json'), 'utf8')))
const eos = new Set(info.eosTokenIds)
const ajv = new Ajv()

const schema = {
  type: 'object',
  properties: { title: { type: 'string', maxLength: 16 }, year: { type: 'integer', minimum: 1900, maximum: 2100 }, good: { type: 'boolean' }, genre: { enum: ['drama', 'comedy'] } },
  required: ['title', 'year', 'good', 'genre'],
  additionalProperties: false,
}
const cases: { name: string; constraint: OutputConstraint | undefined; check: (text: string) => boolean }[] = [
  { name: 'json_schema', constraint: { type: 'json_schema', schema: JSON.stringify(schema) }, check: (s) => ajv.validate(schema, JSON.parse(s)) },
  { name: 'regex', constraint: { type: 'regex', pattern: '[a-z]{3,8}@[a-z]{2,5}\\.(com|org)' }, check: (s) => /^[a-z]{3,8}@[a-z]{2,5}\.(com|org)$/.test(s) },
  { name: 'choice', constraint: { type: 'choice', choices: ['positive', 'negative', 'neutral'] }, check: (s) => ['positive', 'negative', 'neutral'].includes(s) },
  { name: 'none', constraint: undefined, check: () => true },
]

async function decodeTogether(temperature: number, seed: number): Promise<Map<string, { ids: number[]; ended: boolean }>> {
  const runner = new ModelRunner(session, info)
  const prompt = tokenizer.encode('Once upon a time, a little girl wrote').ids
  const out = new Map<string, { ids: number[]; ended: boolean }>()
  for (const c of cases) {
    const sampling: SamplingParams = { temperature, topP: 1, topK: 0, seed, ...(c.constraint ? { constraint: c.constraint } : {}) }
    await prepareGrammar(info, c.name, sampling)
    const entry: PrefillEntry = { rid: c.name, trace: null, tokens: Int32Array.from(prompt), start: 0, last: true, sampling }
    const first = (await runner.prefill(entry)).tokens[0]!
    out.set(c.name, { ids: [first], ended: eos.has(first) })
  }
  for (let step = 0; step < 120; step++) {
    const live = cases.map((c) => c.name).filter((n) => !out.get(n)!.ended)
    if (live.length === 0 || (live.length === 1 && live[0] === 'none')) break
    const { tokens } = await runner.decode(live)
    live.forEach((rid, i) => {
      const o = out.get(rid)!
      o.ids.push(tokens[i]!)
      if (eos.has(tokens[i]!)) o.ended = true
    })
  }
  return out
}

for (const [temperature, seed] of [
  [0, 1],
  [1, 7],
  [1.5, 99],
] as const) {
  t.test(`one batch, temperature ${temperature}: each output is valid for its own constraint`, async (t) => {
    const out = await decodeTogether(temperature, seed)
    for (const c of cases) {
      if (!c.constraint) continue
      const { ids, ended } = out.get(c.name)!
      t.ok(ended, `${c.name} ended with EOS`)
      const text = tokenizer.decode(ids.slice(0, -1))
      t.ok(c.check(text), `${c.name}: ${JSON.stringify(text)}`)
    }
  })
}

t.test('a resumed request (its process died) goes on from its tokens so far: the grammar replays them', async (t) => {
  const prompt = tokenizer.encode('Once upon a time').ids
  const constraint: OutputConstraint = { type: 'json_schema', schema: JSON.stringify(schema) }
  const generate = async (params: SamplingParams, tokens: number[], rid: string): Promise<number[]> => {
    const runner = new ModelRunner(session, info)
    await prepareGrammar(info, rid, params)
    const ids = [(await runner.prefill({ rid, trace: null, tokens: Int32Array.from(tokens), start: 0, last: true, sampling: params })).tokens[0]!]
    while (!eos.has(ids[ids.length - 1]!) && ids.length < 120) ids.push((await runner.decode([rid])).tokens[0]!)
    return ids
  }
  const whole = await generate({ temperature: 0, topP: 1, topK: 0, seed: null, constraint }, prompt, 'whole')
  const cut = 9
  const resumedIds = whole.slice(0, cut)
  const params = forWorker({ temperature: 0, topP: 1, topK: 0, seed: null, constraint }, { promptIds: prompt, resumedIds, eosTokenIds: info.eosTokenIds, ignoreEos: false })
  t.same(params.generatedIds, resumedIds, 'the tokens so far travel to the worker')
  const rest = await generate(params, [...prompt, ...resumedIds], 'resumed')
  const text = tokenizer.decode([...resumedIds, ...rest.slice(0, -1)])
  t.ok(ajv.validate(schema, JSON.parse(text)), text)
  t.same([...resumedIds, ...rest], whole, 'greedy: the same output as without the interruption')
})
