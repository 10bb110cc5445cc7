/**
 * One costly constraint stops no one (issue 27): a 75-byte schema whose grammar takes minutes to
 * compile gets its 400 (SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX, naming the field) once the compile
 * budget is spent, while another client's stream keeps receiving tokens and /health keeps answering;
 * the worker is not taken for hung, and the same schema is then refused again without a compile.
 */
import t from 'tap'
import OpenAI from 'openai'
import { startServer } from '../../harness/server.ts'

const server = await startServer({ args: ['--grammar-compile-timeout', '3', '--hang-timeout', '2'] })
t.teardown(() => server.stop())
const client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })

const costly = { model: 'default', prompt: 'Once', max_tokens: 8, response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'string', maxLength: 90000 } } } }

async function post(body: object): Promise<{ status: number; body: { error?: { code: string; param: string | null; message: string } } }> {
  const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as never }
}

t.test('a schema too costly to compile is a 400 within the budget while plain streams go on', async (t) => {
  const workerPid = server.childPids()['worker-0-0']
  let answered = false
  let chunksWhileCompiling = 0
  let healthWhileCompiling = 0
  const stream = (async () => {
    const s = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 1000, ignore_eos: true, stream: true } as never)
    for await (const _ of s as unknown as AsyncIterable<unknown>) {
      if (answered) break
      chunksWhileCompiling++
    }
  })()
  const health = (async () => {
    while (!answered) {
      if ((await fetch(`${server.url}/health`)).status === 200) healthWhileCompiling++
      await new Promise((r) => setTimeout(r, 200))
    }
  })()
  const refused = await post(costly)
  answered = true
  await Promise.all([stream, health])
  t.equal(refused.status, 400)
  t.equal(refused.body.error?.code, 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX')
  t.equal(refused.body.error?.param, 'response_format.json_schema.schema')
  t.match(refused.body.error?.message, /takes longer than 3 s to compile/)
  t.ok(chunksWhileCompiling > 10, `the plain stream went on (${chunksWhileCompiling} chunks)`)
  t.ok(healthWhileCompiling > 3, `/health answered meanwhile (${healthWhileCompiling} times)`)
  t.equal(server.childPids()['worker-0-0'], workerPid, 'the worker was not taken for hung (a 2 s watchdog)')
  t.notOk(
    server.logs.some((l) => String(l.msg).includes('hung')),
    'no hang reported',
  )

  const again = await post(costly)
  t.equal(again.body.error?.code, 'SPANSERVE_ERR_CONSTRAINT_TOO_COMPLEX', 'the repeat is refused')
  const compiledOk = await post({
    model: 'default',
    prompt: 'Once',
    max_tokens: 8,
    response_format: { type: 'json_schema', json_schema: { name: 'b', schema: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] } } },
  })
  t.equal(compiledOk.status, 200, 'and a good schema is served next')
})

t.test('a schema the engine refuses is a 400 naming the field, from the worker', async (t) => {
  const res = await post({ model: 'default', prompt: 'Once', max_tokens: 8, guided_regex: '(?<=a)b' })
  t.equal(res.status, 400)
  t.equal(res.body.error?.code, 'SPANSERVE_ERR_INVALID_REQUEST')
  t.equal(res.body.error?.param, 'guided_regex')
  t.match(res.body.error?.message, /^guided_regex: the regular expression cannot be compiled: .*Lookbehind/)
  const stream = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt: 'Once', max_tokens: 8, stream: true, guided_grammar: 'root ::= nope' }),
  })
  t.equal(stream.status, 400, 'streamed too, before any event')
  t.match(((await stream.json()) as { error: { param: string } }).error.param, 'guided_grammar')
})
