/**
 * The scripted engine keeps to the IPC contract: an answer the real pipeline could not send (it
 * fails the message schemas the codec checks on decode) fails its request and is recorded, so a
 * route test cannot pass against messages that have drifted from src/ipc/messages.ts.
 */
import t from 'tap'
import type { FinishReason } from '../../../src/ipc/messages.ts'
import type { ErrorCode } from '../../../src/errors.ts'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'

t.test('an output off the contract (a fractional token id, an unknown finish reason) fails the request with a 500', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [{ text: 'a', tokenId: 1.5, finishReason: 'stop' }]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  t.equal(res.statusCode, 500)
  t.match(errorOf(res).message, /breaks the IPC contract \(batch_str: .*tokenId/)
  engine.script = () => [{ text: 'a', finishReason: 'done' as FinishReason }]
  t.equal((await post(app, '/v1/completions', { model: 'default', prompt: 'Hi', stream: true })).statusCode, 500)
  t.equal(engine.violations.length, 2)
  t.match(engine.violations[1], /finishReason/)
  t.equal(engine.live, 0)
})

t.test('an error code the codec does not know, and a tokenize answer off the contract, are violations', async (t) => {
  const { app, engine } = await scriptedApp(t)
  engine.script = () => [{ code: 'SPANSERVE_ERR_MADE_UP' as ErrorCode, message: 'x' }]
  t.equal((await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })).statusCode, 500)
  t.match(engine.violations[0], /^req_error: .*code/)
  engine.tokenizeScript = () => ({ tokens: [1, 2.5] })
  t.equal((await post(app, '/tokenize', { prompt: 'Hi' })).statusCode, 500)
  t.match(engine.violations[1], /^tokenize_out: /)
})
