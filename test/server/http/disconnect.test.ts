/**
 * A request's end from the HTTP side: a client that hangs up (a real loopback socket, no other
 * process) aborts its request in the engine, every sequence of it, streamed or not; a request past
 * --request-timeout is aborted and answered 504.
 */
import t from 'tap'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { errorOf, post, scriptedApp } from '../../helpers/scripted-app.ts'
import { Gate } from '../../helpers/scripted-engine.ts'

/** A POST on its own connection; `response` resolves once the status line arrives. */
async function send(app: FastifyInstance, path: string, body: object): Promise<{ req: ClientRequest; response: Promise<IncomingMessage> }> {
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json' } })
  const response = new Promise<IncomingMessage>((resolve) => req.on('response', resolve))
  req.on('error', () => {})
  req.end(JSON.stringify(body))
  return { req, response }
}

/** The first body bytes of a response. */
const firstData = (res: IncomingMessage) => new Promise<string>((resolve) => res.once('data', (b: Buffer) => resolve(b.toString())))

t.test('hanging up mid-stream aborts the request, with the reason, and it stops', async (t) => {
  const { app, engine } = await scriptedApp(t)
  const gate = new Gate()
  engine.script = () => [{ text: 'first' }, gate, { text: 'never sent', finishReason: 'stop' }]
  const { req, response } = await send(app, '/v1/completions', { model: 'default', prompt: 'Hi', stream: true })
  t.match(await firstData(await response), /"text":"first"/, 'the first chunk came')
  req.destroy()
  await engine.until(() => engine.aborts.length === 1)
  t.strictSame(engine.aborts, [{ rid: engine.requests[0]!.rid, reason: 'client disconnected' }])
  t.equal(engine.live, 0)
  gate.open()
})

t.test('hanging up before a whole answer aborts it too; so does every sequence of an n > 1 stream', async (t) => {
  const { app, engine } = await scriptedApp(t)
  // Sequences that never finish: only the hang-up ends them.
  engine.script = () => [{ text: 'going on' }]
  const whole = await send(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  await engine.until(() => engine.requests.length === 1)
  whole.req.destroy()
  await engine.until(() => engine.aborts.length === 1)
  t.equal(engine.aborts[0]!.rid, engine.requests[0]!.rid)

  const streamed = await send(app, '/v1/completions', { model: 'default', prompt: 'Hi', n: 3, stream: true })
  await engine.until(() => engine.requests.length === 4)
  await firstData(await streamed.response)
  streamed.req.destroy()
  await engine.until(() => engine.aborts.length === 4)
  t.same(
    engine.aborts
      .slice(1)
      .map((a) => a.rid)
      .sort(),
    engine.requests
      .slice(1)
      .map((r) => r.rid)
      .sort(),
    'each sequence aborted',
  )
  t.ok(engine.aborts.every((a) => a.reason === 'client disconnected'))
  t.equal(engine.live, 0)
})

t.test('--request-timeout: the request is aborted and answered 504', async (t) => {
  const { app, engine } = await scriptedApp(t, { argv: ['--request-timeout', '0.2'] })
  const never = new Gate()
  t.teardown(() => never.open())
  engine.script = () => [never]
  const res = await post(app, '/v1/completions', { model: 'default', prompt: 'Hi' })
  t.equal(res.statusCode, 504)
  t.match(errorOf(res), { code: 'SPANSERVE_ERR_TIMEOUT', type: 'timeout_error' })
  t.strictSame(engine.aborts, [{ rid: engine.requests[0]!.rid, reason: 'SPANSERVE_ERR_TIMEOUT' }])
})
