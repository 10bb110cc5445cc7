/**
 * n > 1, best_of and several prompts through inject() against a scripted engine: one engine request
 * per sequence (seeded ones with seed + index), answered together as choices indexed prompt-major,
 * whole or streamed, with the usage summed (each prompt once); the bounds are 400s naming the field.
 */
import t from 'tap'
import type { GenerateReqInput } from '../../../src/ipc/messages.ts'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { Gate, fail, tokens } from '../../helpers/scripted-engine.ts'
import { parseSse } from '../../helpers/sse.ts'

/** Each sequence writes which prompt and which seed it was: the choice it lands in shows the mapping. */
const signed = (req: GenerateReqInput) => tokens([`${req.text ?? req.inputIds?.join(',') ?? 'chat'}`, `#${req.sampling.seed}`], 'length')

t.test('n: one request per choice, seeds seed + index, choices 0..n-1, usage with the prompt once', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = signed
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'one two', max_tokens: 2, n: 3, seed: 10 })
  t.equal(res.statusCode, 200)
  t.same(
    engine.requests.map((r) => r.sampling.seed),
    [10, 11, 12],
  )
  t.equal(new Set(engine.requests.map((r) => r.rid)).size, 3, 'each its own request')
  const body = res.json()
  t.same(body.choices, [
    { index: 0, text: 'one two#10', logprobs: null, finish_reason: 'length' },
    { index: 1, text: 'one two#11', logprobs: null, finish_reason: 'length' },
    { index: 2, text: 'one two#12', logprobs: null, finish_reason: 'length' },
  ])
  t.strictSame(body.usage, { prompt_tokens: 2, completion_tokens: 6, total_tokens: 8 })
  t.match(body.id, /^cmpl-/)
  const unseeded = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 2 })
  t.same(
    engine.requests.slice(3).map((r) => r.sampling.seed),
    [null, null],
    'no seed: each draws its own',
  )
  t.equal(unseeded.json().choices.length, 2)
})

t.test('several prompts: prompt-major, n per prompt, the usage summing each prompt once', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = signed
  const res = await post(app, '/v1/completions', { model: 'default', prompt: ['a b', 'c'], max_tokens: 2, n: 2, seed: 100 })
  t.same(
    res.json().choices.map((c: { index: number; text: string }) => [c.index, c.text]),
    [
      [0, 'a b#100'],
      [1, 'a b#101'],
      [2, 'c#100'],
      [3, 'c#101'],
    ],
  )
  t.strictSame(res.json().usage, { prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 })
  const ids = await post(app, '/v1/completions', {
    model: 'default',
    prompt: [
      [1, 2, 3],
      [4, 5],
    ],
    max_tokens: 2,
  })
  t.same(
    ids.json().choices.map((c: { text: string }) => c.text),
    ['1,2,3#null', '4,5#null'],
    'token-array prompts too',
  )
})

t.test('chat: n choices of assistant messages', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = signed
  const res = await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hi' }], n: 2, seed: 1 })
  t.same(res.json().choices, [
    { index: 0, message: { role: 'assistant', content: 'chat#1' }, logprobs: null, finish_reason: 'length' },
    { index: 1, message: { role: 'assistant', content: 'chat#2' }, logprobs: null, finish_reason: 'length' },
  ])
  t.equal(res.json().object, 'chat.completion')
})

t.test('streamed: chunks of every choice by index, one id, each choice finishing, one usage chunk summing them, one [DONE]', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = signed
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'one two', max_tokens: 2, n: 3, seed: 5, stream: true, stream_options: { include_usage: true } })
  const sse = parseSse(res.body)
  t.ok(sse.done)
  const texts = ['', '', '']
  const finished: number[] = []
  for (const c of sse.chunks.slice(0, -1)) {
    t.equal(c.id, sse.chunks[0]!.id, 'one id for the whole request')
    t.notOk('usage' in c)
    for (const choice of c.choices as { index: number; text: string; finish_reason: string | null }[]) {
      texts[choice.index] += choice.text
      if (choice.finish_reason) finished.push(choice.index)
    }
  }
  t.same(texts, ['one two#5', 'one two#6', 'one two#7'])
  t.same(finished.sort(), [0, 1, 2], 'each choice finishes once')
  t.strictSame(sse.chunks.at(-1)!.choices, [])
  t.strictSame(sse.chunks.at(-1)!.usage, { prompt_tokens: 2, completion_tokens: 6, total_tokens: 8 })
  const chat = parseSse((await post(app, '/v1/chat/completions', { model: 'default', messages: [{ role: 'user', content: 'Hi' }], n: 2, stream: true })).body)
  const roles = chat.chunks.flatMap((c) => (c.choices as { index: number; delta: { role?: string } }[]).filter((x) => x.delta.role).map((x) => x.index))
  t.same(roles.sort(), [0, 1], "each chat choice's first delta names the role")
  t.notOk(
    chat.chunks.some((c) => 'usage' in c),
    'no usage chunk unless asked',
  )
})

t.test('best_of: every sequence scored by its logprobs; the n most likely come back, most likely first', async (t) => {
  const { app, engine } = await scriptedApp(t)
  // Seeds 5, 6, 7: 6 is the most likely, then 7.
  const logprob: Record<number, number> = { 5: -3, 6: -0.5, 7: -1 }
  engine.script = (req) => [{ text: `s${req.sampling.seed}`, finishReason: 'length', logprobs: { token: 'x', logprob: logprob[req.sampling.seed!]!, top: [], topLogprobs: new Float32Array() } }]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 1, seed: 5, n: 2, best_of: 3 })
  t.equal(engine.requests.length, 3)
  t.ok(
    engine.requests.every((r) => r.sampling.logprobs === 0),
    'each asks for its logprobs, to be ranked',
  )
  t.same(
    res.json().choices.map((c: { index: number; text: string; logprobs: unknown }) => [c.index, c.text, c.logprobs]),
    [
      [0, 's6', null],
      [1, 's7', null],
    ],
  )
})

t.test('bounds: 400 naming n, best_of or prompt; nothing reaches the engine', async (t) => {
  const { app, engine } = await scriptedApp(t, { argv: ['--max-total-tokens', '4096'] })
  const bad = async (over: Record<string, unknown>, param: string) => {
    const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 4, ...over })
    t.equal(res.statusCode, 400, `${JSON.stringify(over)}: 400`)
    t.match(errorOf(res), { param, type: 'invalid_request_error' }, `${JSON.stringify(over)}: param ${param}`)
  }
  await bad({ n: 0 }, 'n')
  await bad({ n: 129 }, 'n')
  await bad({ n: 4, best_of: 2 }, 'best_of')
  await bad({ n: 1, best_of: 2, stream: true }, 'best_of')
  // --max-request-kv-share 0.5 of 4096 tokens: 2048 for one request.
  await bad({ n: 16, max_tokens: 1000 }, 'n')
  await bad({ n: 1, best_of: 16, max_tokens: 1000 }, 'best_of')
  await bad({ prompt: Array.from({ length: 16 }, () => 'Hi'), max_tokens: 1000 }, 'prompt')
  t.equal(engine.requests.length, 0)
  t.equal((await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 2, max_tokens: 1000 })).statusCode, 200, 'within the share')
})

t.test('one sequence failing fails the request and aborts the others, whole and mid-stream (one error event)', async (t) => {
  const { app, engine } = await scriptedApp(t)
  // The prefix cache is on by default: the other sequences start after the first's first token.
  engine.script = (req, call) => (call % 3 === 1 ? [{ text: 'x' }, fail('SPANSERVE_ERR_INTERNAL', 'the worker failed')] : [{ text: `seq ${req.sampling.seed}` }])
  const whole = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 3, seed: 0 })
  t.equal(whole.statusCode, 500)
  t.match(errorOf(whole), { code: 'SPANSERVE_ERR_INTERNAL', message: 'the worker failed' })
  const others = engine.requests.filter((_, i) => i !== 1).map((r) => r.rid)
  t.same(engine.aborts.map((a) => a.rid).sort(), [...others].sort(), 'the other sequences are aborted')
  t.equal(engine.live, 0, 'nothing left running')
  const streamed = parseSse((await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 3, seed: 0, stream: true })).body)
  t.equal(streamed.chunks.filter((c) => 'error' in c).length, 1, 'one error event')
  t.match(streamed.chunks.at(-1), { error: { code: 'SPANSERVE_ERR_INTERNAL' } })
  t.ok(streamed.done)
  t.equal(engine.live, 0)
})

t.test("with the prefix cache on, a prompt's other sequences start once its first has a token (they share its prefill); off, all at once", async (t) => {
  const { app, engine } = await scriptedApp(t)
  const first = new Gate()
  engine.script = (_req, call) => (call === 0 ? [first, ...tokens(['a'], 'length')] : tokens(['b'], 'length'))
  const answer = post(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 3 })
  // The sequences are submitted in one synchronous loop: any not held back would be here by now.
  await engine.until(() => engine.requests.length === 1)
  t.equal(engine.requests.length, 1, 'the others wait for the first token')
  first.open()
  t.equal((await answer).json().choices.length, 3)
  t.equal(engine.requests.length, 3)
  const off = await scriptedApp(t, { argv: ['--disable-radix-cache'] })
  const held = new Gate()
  off.engine.script = () => [held, ...tokens(['a'], 'length')]
  const all = post(off.app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 3 })
  await off.engine.until(() => off.engine.requests.length === 3)
  t.pass('without the cache the three go at once')
  held.open()
  t.equal((await all).statusCode, 200)
})
