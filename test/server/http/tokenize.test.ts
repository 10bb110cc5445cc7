/**
 * vLLM's POST /tokenize and POST /detokenize through inject() against a scripted engine: the body
 * becomes the TokenizeReq the tokenizer answers, and its TokenizeOutput the response.
 */
import t from 'tap'
import { SpanserveError } from '../../../src/errors.ts'
import type { TokenizeReq } from '../../../src/ipc/messages.ts'
import { CONTEXT_LENGTH, errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'

/** The call without its id, which must be there. */
function stable(req: TokenizeReq): Omit<TokenizeReq, 'rid'> {
  const { rid: _rid, ...rest } = req
  return rest
}

t.test('a prompt: tokenized with special tokens; count, max_model_len and tokens back', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.tokenizeScript = () => ({ tokens: [1, 450, 2217] })
  const res = await post(app, '/tokenize', { model: 'default', prompt: 'Once upon' })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { count: 3, max_model_len: CONTEXT_LENGTH, tokens: [1, 450, 2217], token_strs: null })
  t.strictSame(stable(engine.tokenizeCalls[0]!), {
    type: 'tokenize',
    text: 'Once upon',
    messages: null,
    tools: null,
    tokens: null,
    addSpecialTokens: true,
    addGenerationPrompt: true,
    tokenStrs: false,
  })
  t.match(engine.tokenizeCalls[0]!.rid, /^[0-9a-f]{24}$/)
  await post(app, '/tokenize', { prompt: 'x', add_special_tokens: false, return_token_strs: true })
  t.match(engine.tokenizeCalls[1], { addSpecialTokens: false, tokenStrs: true }, 'the flags pass through; the model may be left out')
})

t.test('messages: rendered by the template with their tools, no special tokens by default; token_strs when asked', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.tokenizeScript = () => ({ tokens: [5, 6], tokenStrs: ['<|user|>', 'Hi'] })
  const res = await post(app, '/tokenize', {
    model: 'default',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }],
    tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
    add_generation_prompt: false,
    return_token_strs: true,
  })
  t.strictSame(res.json(), { count: 2, max_model_len: CONTEXT_LENGTH, tokens: [5, 6], token_strs: ['<|user|>', 'Hi'] })
  t.strictSame(stable(engine.tokenizeCalls[0]!), {
    type: 'tokenize',
    text: null,
    messages: [{ role: 'user', content: 'Hi' }],
    tools: [{ type: 'function', function: { name: 'f', description: null, parameters: { type: 'object' } } }],
    tokens: null,
    addSpecialTokens: false,
    addGenerationPrompt: false,
    tokenStrs: true,
  })
})

t.test('detokenize: the ids to the tokenizer, its text back as prompt', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.tokenizeScript = (req) => ({ tokens: req.tokens!, text: 'Once upon' })
  const res = await post(app, '/detokenize', { model: 'default', tokens: [450, 2217] })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { prompt: 'Once upon' })
  t.strictSame(stable(engine.tokenizeCalls[0]!), {
    type: 'tokenize',
    text: null,
    messages: null,
    tools: null,
    tokens: [450, 2217],
    addSpecialTokens: false,
    addGenerationPrompt: false,
    tokenStrs: false,
  })
})

t.test("refusals: prompt and messages both or neither, another model, bad ids, the tokenizer's own error", async (t) => {
  const { app, engine } = await scriptedApp(t)
  const both = await post(app, '/tokenize', { prompt: 'x', messages: [{ role: 'user', content: 'y' }] })
  t.equal(both.statusCode, 400)
  t.equal(errorOf(both).param, 'messages')
  const neither = await post(app, '/tokenize', { model: 'default' })
  t.equal(neither.statusCode, 400)
  t.equal(errorOf(neither).param, 'prompt')
  const model = await post(app, '/tokenize', { model: 'gpt-9', prompt: 'x' })
  t.equal(model.statusCode, 404)
  t.match(errorOf(model), { param: 'model', code: 'SPANSERVE_ERR_MODEL_NOT_FOUND' })
  t.equal((await post(app, '/detokenize', { model: 'gpt-9', tokens: [1] })).statusCode, 404)
  const ids = await post(app, '/detokenize', { tokens: ['a'] })
  t.equal(ids.statusCode, 400)
  t.equal(errorOf(ids).param, 'tokens.0')
  t.equal(engine.tokenizeCalls.length, 0, 'none reached the tokenizer')
  engine.tokenizeScript = () => {
    throw new SpanserveError('SPANSERVE_ERR_TOKEN_ID', 'token id 99999999 is outside the vocabulary', 'tokens')
  }
  const vocab = await post(app, '/detokenize', { tokens: [99999999] })
  t.equal(vocab.statusCode, 400)
  t.match(errorOf(vocab), { code: 'SPANSERVE_ERR_TOKEN_ID', param: 'tokens', message: 'token id 99999999 is outside the vocabulary' })
})
