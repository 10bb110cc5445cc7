/**
 * POST /v1/completions through inject() against a scripted engine: the body becomes the
 * GenerateReqInput the engine receives (prompt, max_tokens, sampling, stop, seed, logprobs, echo,
 * client), and the engine's outputs become the response, whole or as SSE chunks, with usage only
 * where OpenAI sends it.
 */
import t, { type Test } from 'tap'
import type { GenerateReqInput } from '../../../src/ipc/messages.ts'
import { SpanserveError } from '../../../src/errors.ts'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { fail, logprobs, tokens } from '../../helpers/scripted-engine.ts'
import { parseSse } from '../../helpers/sse.ts'

/** The request without what changes on every call (its id, arrival time), which must be there. */
function stable(t: Test, req: GenerateReqInput): Omit<GenerateReqInput, 'rid' | 'arrivalMs'> {
  const { rid, arrivalMs, ...rest } = req
  t.match(rid, /^[0-9a-f]{24}$/, 'a request id')
  t.ok(Math.abs(arrivalMs - Date.now()) < 60_000, 'arrival time in ms since the epoch')
  return rest
}

t.test('the body becomes the GenerateReqInput: prompt, max_tokens, every sampling field, stop, ignore_eos, client', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const res = await post(
    app,
    '/v1/completions',
    {
      model: 'default',
      prompt: 'Once upon a time',
      max_tokens: 5,
      temperature: 0.25,
      top_p: 0.5,
      top_k: 40,
      seed: 7,
      stop: ['\n', 'END'],
      presence_penalty: 0.5,
      frequency_penalty: -0.25,
      repetition_penalty: 1.5,
      min_p: 0.125,
      min_tokens: 2,
      stop_token_ids: [3, 3, 9],
      logit_bias: { '12': 5, '13': 0 },
      ignore_eos: true,
    },
    { 'x-spanserve-client': 'team-a' },
  )
  t.equal(res.statusCode, 200)
  t.strictSame(stable(t, engine.requests[0]!), {
    type: 'generate',
    trace: null,
    text: 'Once upon a time',
    inputIds: null,
    messages: null,
    maxTokens: 5,
    // Duplicate stop ids once; a zero bias is no bias.
    sampling: {
      temperature: 0.25,
      topP: 0.5,
      topK: 40,
      seed: 7,
      presencePenalty: 0.5,
      frequencyPenalty: -0.25,
      repetitionPenalty: 1.5,
      minP: 0.125,
      minTokens: 2,
      stopTokenIds: [3, 9],
      logitBias: [[12, 5]],
    },
    stop: ['\n', 'END'],
    ignoreEos: true,
    client: 'team-a',
  })
})

t.test('left out: OpenAI defaults (16 tokens, temperature 1, no seed, no stop); top_k -1 is no cut; a stop string is a list of one', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', top_k: -1, stop: 'x', seed: null, temperature: null })
  const [plain, other] = engine.requests
  t.equal(plain!.maxTokens, 16)
  t.strictSame(plain!.sampling, { temperature: 1, topP: 1, topK: 0, seed: null })
  t.strictSame(plain!.stop, [])
  t.equal(plain!.ignoreEos, false)
  t.equal(other!.sampling.topK, 0)
  t.equal(other!.sampling.seed, null)
  t.equal(other!.sampling.temperature, 1)
  t.strictSame(other!.stop, ['x'])
})

t.test("seeds beyond 32 bits are folded into the sampler's 32 bits", async (t) => {
  const { app, engine } = await scriptedApp(t)
  for (const seed of [-1, 2 ** 40 + 5]) await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', seed })
  t.same(
    engine.requests.map((r) => r.sampling.seed),
    [2 ** 32 - 1, 5],
  )
})

t.test("the model's generation_config.json gives the defaults; the body's values win", async (t) => {
  const modelDir = t.testdir({ 'generation_config.json': JSON.stringify({ temperature: 0.75, top_p: 0.875, top_k: 20, repetition_penalty: 1.25, min_p: 0.0625 }) })
  const { app, engine } = await scriptedApp(t, { modelDir })
  await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', temperature: 0, top_p: 1, top_k: 0, repetition_penalty: 1, min_p: 0 })
  t.strictSame(engine.requests[0]!.sampling, { temperature: 0.75, topP: 0.875, topK: 20, seed: null, repetitionPenalty: 1.25, minP: 0.0625 })
  t.strictSame(engine.requests[1]!.sampling, { temperature: 0, topP: 1, topK: 0, seed: null })
  const greedyModel = t.testdir({ 'generation_config.json': JSON.stringify({ do_sample: false, temperature: 0.7 }) })
  const greedy = await scriptedApp(t, { modelDir: greedyModel })
  await post(greedy.app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  t.equal(greedy.engine.requests[0]!.sampling.temperature, 0, 'do_sample false: greedy')
})

t.test('a token-id prompt goes as inputIds; several prompts are one request each', async (t) => {
  const { app, engine } = await scriptedApp(t)
  await post(app, '/v1/completions', { model: 'default', prompt: [1, 2, 3], max_tokens: 2 })
  t.strictSame(engine.requests[0]!.inputIds, [1, 2, 3])
  t.equal(engine.requests[0]!.text, null)
  const several = await post(app, '/v1/completions', { model: 'default', prompt: [[4, 5], [6]], max_tokens: 2 })
  t.equal(several.statusCode, 200)
  t.strictSame(
    engine.requests.slice(1).map((r) => r.inputIds),
    [[4, 5], [6]],
  )
})

t.test('whole: the outputs joined into one choice, with finish_reason, usage, id and model', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['Hello', ',', ' world'], 'length')
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Once upon a time', max_tokens: 3 })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const rid = engine.requests[0]!.rid
  const body = res.json()
  t.strictSame(body, {
    id: `cmpl-${rid}`,
    created: body.created,
    model: 'default',
    object: 'text_completion',
    choices: [{ index: 0, text: 'Hello, world', logprobs: null, finish_reason: 'length' }],
    // The prompt's 4 words stand for its tokens here (the scripted engine's count).
    usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
  })
  t.ok(Math.abs(body.created - Date.now() / 1000) < 60, 'created: seconds since the epoch')
  t.equal(res.headers['x-request-id'], rid, 'x-request-id: the request id when the client sent none')
  const named = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' }, { 'x-request-id': 'my-request-42' })
  t.equal(named.headers['x-request-id'], 'my-request-42', "the client's x-request-id comes back")
  const odd = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' }, { 'x-request-id': 'no spaces <allowed>' })
  t.equal(odd.headers['x-request-id'], engine.requests[2]!.rid, 'one that is not a plain token is replaced by the request id')
})

t.test('prefix cache hits come back as usage.prompt_tokens_details.cached_tokens', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['a', 'b'], 'stop', { cachedTokens: 16 })
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  t.strictSame(res.json().usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, prompt_tokens_details: { cached_tokens: 16 } })
})

t.test('streamed: one chunk per output with text, the finish on the last, then [DONE]; no usage unless asked', async (t) => {
  const { app, engine } = await scriptedApp(t)
  // An empty delta (text held back, e.g. half a character) sends no chunk.
  engine.script = () => tokens(['Hel', '', 'lo', ' there'], 'stop')
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', stream: true })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  const rid = engine.requests[0]!.rid
  t.equal(res.headers['x-request-id'], rid)
  const sse = parseSse(res.body)
  t.ok(sse.done, 'ends with data: [DONE]')
  t.same(
    sse.chunks.map((c) => c.choices),
    [
      [{ index: 0, text: 'Hel', logprobs: null, finish_reason: null }],
      [{ index: 0, text: 'lo', logprobs: null, finish_reason: null }],
      [{ index: 0, text: ' there', logprobs: null, finish_reason: 'stop' }],
    ],
  )
  for (const c of sse.chunks) {
    t.equal(c.id, `cmpl-${rid}`)
    t.equal(c.object, 'text_completion')
    t.equal(c.model, 'default')
    t.notOk('usage' in c, 'no usage without stream_options.include_usage')
  }
})

t.test('stream_options.include_usage: a last chunk with empty choices and the usage; continuous_usage_stats: usage on every chunk', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens(['a', 'b', 'c'], 'length')
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'one two', max_tokens: 3, stream: true, stream_options: { include_usage: true } })
  const sse = parseSse(res.body)
  t.ok(sse.done)
  t.equal(sse.chunks.length, 4)
  for (const c of sse.chunks.slice(0, 3)) t.notOk('usage' in c, 'text chunks carry none')
  t.strictSame(sse.chunks[3], {
    id: sse.chunks[0]!.id,
    created: sse.chunks[0]!.created,
    model: 'default',
    object: 'text_completion',
    choices: [],
    usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 },
  })
  const continuous = await post(app, '/v1/completions', { model: 'default', prompt: 'one two', max_tokens: 3, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } })
  const chunks = parseSse(continuous.body).chunks
  t.same(
    chunks.map((c) => (c.usage as { completion_tokens: number }).completion_tokens),
    [1, 2, 3, 3],
    'every chunk, the usage so far, then the usage chunk',
  )
})

t.test('echo: the prompt comes back before the completion, its text or, for token ids, its tokens from the engine', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => tokens([' there', ' was'], 'length')
  const text = await post(app, '/v1/completions', { model: 'default', prompt: 'Once upon', max_tokens: 2, echo: true })
  t.equal(text.json().choices[0].text, 'Once upon there was')
  t.equal(engine.requests[0]!.sampling.promptLogprobs, 0, "the prompt's tokens are asked for")
  // A token-id prompt's text comes with the first output's prompt tokens.
  const prompt = [
    { token: 'Once', logprob: null, top: [], topLogprobs: [] },
    { token: ' upon', logprob: -1, top: [], topLogprobs: [] },
  ]
  engine.script = () => [
    { text: ' there', logprobs: { ...logprobs(' there', -0.5), prompt } },
    { text: ' was', finishReason: 'length', logprobs: logprobs(' was', -0.5) },
  ]
  const ids = await post(app, '/v1/completions', { model: 'default', prompt: [7, 8], max_tokens: 2, echo: true })
  t.equal(ids.json().choices[0].text, 'Once upon there was')
  const streamed = await post(app, '/v1/completions', { model: 'default', prompt: [7, 8], max_tokens: 2, echo: true, stream: true })
  t.same(
    parseSse(streamed.body).chunks.map((c) => (c.choices as { text: string }[])[0]!.text),
    ['Once upon there', ' was'],
    'streamed: the echo leads the first chunk',
  )
})

t.test('logprobs: asked of the engine, answered in the legacy shape (tokens, token_logprobs, top_logprobs with the sampled token, text_offset)', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [
    {
      text: ' the',
      logprobs: logprobs(' the', -0.5, [
        [' the', -0.5],
        [' a', -1.5],
      ]),
    },
    {
      text: ' cat',
      finishReason: 'length',
      logprobs: logprobs(' cat', -1.25, [
        [' dog', -0.75],
        [' cow', -1],
      ]),
    },
  ]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 2, logprobs: 2 })
  t.equal(engine.requests[0]!.sampling.logprobs, 2)
  t.notOk('promptLogprobs' in engine.requests[0]!.sampling, 'no prompt logprobs without echo')
  t.strictSame(res.json().choices[0].logprobs, {
    tokens: [' the', ' cat'],
    token_logprobs: [-0.5, -1.25],
    top_logprobs: [
      { ' the': -0.5, ' a': -1.5 },
      { ' dog': -0.75, ' cow': -1, ' cat': -1.25 },
    ],
    text_offset: [0, 4],
  })
  const streamed = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 2, logprobs: 2, stream: true })
  const chunks = parseSse(streamed.body).chunks.map((c) => (c.choices as { logprobs: { tokens: string[]; text_offset: number[] } }[])[0]!.logprobs)
  t.same(
    chunks.map((l) => l.tokens),
    [[' the'], [' cat']],
    'each chunk its own token',
  )
  t.same(
    chunks.map((l) => l.text_offset),
    [[0], [4]],
    'offsets continue across chunks',
  )
  const none = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 2 })
  t.equal(none.json().choices[0].logprobs, null)
  t.notOk('logprobs' in engine.requests[2]!.sampling, 'none asked of the engine when the body asks none')
})

t.test('echo with logprobs: the prompt tokens lead, the first with null; max_tokens 0 with echo scores the prompt alone', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const prompt = [
    { token: 'Once', logprob: null, top: [], topLogprobs: [] },
    { token: ' upon', logprob: -2, top: [' upon'], topLogprobs: [-2] },
  ]
  engine.script = (req) => [
    { text: ' x', finishReason: req.maxTokens === 1 ? 'length' : null, logprobs: { ...logprobs(' x', -0.25, [[' x', -0.25]]), prompt } },
    { text: ' y', finishReason: 'length', logprobs: logprobs(' y', -0.5) },
  ]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Once upon', max_tokens: 2, echo: true, logprobs: 1 })
  t.equal(engine.requests[0]!.sampling.promptLogprobs, 1)
  const lp = res.json().choices[0].logprobs
  t.same(lp.tokens, ['Once', ' upon', ' x', ' y'])
  t.same(lp.token_logprobs, [null, -2, -0.25, -0.5])
  t.same(lp.top_logprobs[0], null)
  t.same(lp.text_offset, [0, 4, 9, 11])

  const zero = await post(app, '/v1/completions', { model: 'default', prompt: 'Once upon', max_tokens: 0, echo: true, logprobs: 1 })
  t.equal(zero.statusCode, 200)
  t.equal(engine.requests[1]!.maxTokens, 1, 'run as one token, which is dropped')
  const choice = zero.json().choices[0]
  t.equal(choice.text, 'Once upon', 'the prompt alone')
  t.equal(choice.finish_reason, 'length')
  t.same(choice.logprobs.tokens, ['Once', ' upon'])
  t.equal(zero.json().usage.completion_tokens, 0)

  const refused = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 0 })
  t.equal(refused.statusCode, 400)
  t.equal(errorOf(refused).param, 'max_tokens', 'max_tokens 0 without echo')
  t.equal(engine.requests.length, 2, 'nothing reached the engine')
})

t.test('an engine error before any output is the HTTP error, with its param; a submit the engine refuses is a 503 with Retry-After', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [fail('SPANSERVE_ERR_CONTEXT_LENGTH', 'the prompt and max_tokens exceed the context', 'max_tokens')]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', max_tokens: 5 })
  t.equal(res.statusCode, 400)
  t.strictSame(res.json(), { error: { message: 'the prompt and max_tokens exceed the context', type: 'invalid_request_error', param: 'max_tokens', code: 'SPANSERVE_ERR_CONTEXT_LENGTH' } })
  t.equal(res.headers['x-request-id'], engine.requests[0]!.rid)
  const streamed = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', stream: true })
  t.equal(streamed.statusCode, 400, 'streamed: nothing sent yet, so a plain HTTP error')
  t.equal(errorOf(streamed).code, 'SPANSERVE_ERR_CONTEXT_LENGTH')

  engine.script = () => {
    throw new SpanserveError('SPANSERVE_ERR_UNAVAILABLE', 'a process keeps dying; not waiting for its restart: retry later')
  }
  const refused = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.equal(errorOf(refused).code, 'SPANSERVE_ERR_UNAVAILABLE')
})

t.test('an engine error mid-stream: the chunks so far, an error event in OpenAI shape, then [DONE]', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [{ text: 'Hello' }, fail('SPANSERVE_ERR_POISON_REQUEST', 'the request was running when a process crashed twice')]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', stream: true })
  t.equal(res.statusCode, 200)
  const sse = parseSse(res.body)
  t.equal(sse.chunks.length, 2)
  t.equal((sse.chunks[0]!.choices as { text: string }[])[0]!.text, 'Hello')
  t.strictSame(sse.chunks[1], { error: { message: 'the request was running when a process crashed twice', type: 'server_error', param: null, code: 'SPANSERVE_ERR_POISON_REQUEST' } })
  t.ok(sse.done)
})

t.test('another model is a 404 naming model; nothing reaches the engine', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const res = await post(app, '/v1/completions', { model: 'gpt-9', prompt: 'Hi' })
  t.equal(res.statusCode, 404)
  t.equal(errorOf(res).code, 'SPANSERVE_ERR_MODEL_NOT_FOUND')
  t.equal(errorOf(res).param, 'model')
  t.equal(engine.requests.length, 0)
  const named = await scriptedApp(t, { argv: ['--served-model-name', 'Qwen/Qwen3-0.6B'] })
  t.equal((await post(named.app, '/v1/completions', { model: 'Qwen/Qwen3-0.6B', prompt: 'Hi' })).statusCode, 200, '--served-model-name is the name to use')
  t.equal((await post(named.app, '/v1/completions', { model: 'default', prompt: 'Hi' })).statusCode, 404)
})
