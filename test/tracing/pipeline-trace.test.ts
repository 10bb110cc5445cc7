/**
 * One trace per request across every process, received by a real OTLP receiver (gRPC and
 * HTTP/protobuf) from `npm start -- --trace-enable --otlp-traces-endpoint …`.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { exportsFlushed, startOtlpReceiver, type ReceivedSpan, type OtlpReceiver } from '../../harness/otlp-receiver.ts'
import { startServer, type RunningServer } from '../../harness/server.ts'

/** Spans exported every 100 ms, not the SDK's 5 s: the waits for them are waits for events, and short. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' }

const hex = (n: number) => randomBytes(n).toString('hex')

function callerTraceparent(sampled = true) {
  const traceId = hex(16)
  const spanId = hex(8)
  return { traceId, spanId, header: `00-${traceId}-${spanId}-${sampled ? '01' : '00'}` }
}

async function complete(server: RunningServer, body: object, traceparent: string) {
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent },
    body: JSON.stringify({ model: 'default', temperature: 0, ...body }),
  })
  return { res, text: await res.text() }
}

/** Every span the server's processes ended so far has arrived at the receiver. */
const flushed = (receiver: OtlpReceiver, server: RunningServer) => exportsFlushed(receiver, async (traceparent) => void (await complete(server, { prompt: 'x', max_tokens: 1 }, traceparent)))

/** Every span of the trace, once the request's root and all four thread spans have arrived. */
async function traceOf(receiver: OtlpReceiver, server: RunningServer, traceId: string): Promise<ReceivedSpan[]> {
  const roles = ['Server', 'Tokenizer', 'Scheduler', 'Worker']
  await receiver.waitForSpans((spans) => {
    const mine = spans.filter((s) => s.traceId === traceId)
    return mine.some((s) => s.name === 'llm_request') && roles.every((r) => mine.some((s) => s.name.startsWith(r + ' ')))
  }, 20_000)
  // The last batch of slices: everything before a marker request's spans.
  await flushed(receiver, server)
  return receiver.spans.filter((s) => s.traceId === traceId)
}

function checkTree(t: Test, spans: ReceivedSpan[], caller: { traceId: string; spanId: string }, body: Record<string, unknown>) {
  const byId = new Map(spans.map((s) => [s.spanId, s]))
  t.ok(
    spans.every((s) => s.traceId === caller.traceId),
    'one trace id',
  )
  const orphans = spans.filter((s) => s.parentSpanId !== caller.spanId && !byId.has(s.parentSpanId))
  t.same(
    orphans.map((s) => s.name),
    [],
    "every span's parent is present, up to the caller's span",
  )
  const tops = spans.filter((s) => s.parentSpanId === caller.spanId)
  t.equal(tops.length, 1, "one span under the caller's")
  const http = tops[0]!
  t.equal(http.attributes['http.route'], '/v1/completions', 'the @fastify/otel HTTP span is at the top')
  t.ok(
    spans.some((s) => s.parentSpanId === http.spanId && s.name.startsWith('onRequest - ')),
    "@fastify/otel's lifecycle hook spans at level 3",
  )
  const root = spans.find((s) => s.name === 'llm_request')!
  t.ok(root, 'the request root span')
  let up: ReceivedSpan | undefined = root
  while (up && up !== http) up = byId.get(up.parentSpanId)
  t.equal(up, http, 'llm_request sits under the HTTP span')
  const threads = spans.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name)
  for (const label of [/^Server \[/, /^Tokenizer \[/, /^Scheduler \[DP 0\] \[/, /^Worker \[TP 0\] \[DP 0\] \[/]) {
    t.ok(
      threads.some((n) => label.test(n)),
      `thread span ${label}`,
    )
  }
  const names = new Set(spans.map((s) => s.name))
  for (const slice of ['api_server_dispatch', 'tokenize', 'dpc_dispatch', 'prefill_waiting', 'prefill_forward', 'decode_forward', 'detokenize']) {
    t.ok(names.has(slice), `slice ${slice}`)
  }
  // Ranks are on the worker's resource and thread span; its slices do not repeat them.
  for (const s of spans.filter((s) => s.name === 'prefill_forward' || s.name === 'decode_forward')) {
    t.equal(s.resource['spanserve.tp_rank'], 0)
    t.equal(s.resource['spanserve.dp_rank'], 0)
    t.equal(s.attributes['spanserve.tp_rank'], undefined)
    t.equal(s.attributes['spanserve.tp.all_reduce_ms'], undefined, 'no all-reduce time without tensor parallelism')
  }
  const decodes = spans.filter((s) => s.name === 'decode_forward')
  t.ok(
    decodes.every((s) => typeof s.attributes['spanserve.batch.size'] === 'number' && typeof s.attributes['spanserve.step'] === 'number'),
    'decode slices carry batch size and step',
  )
  // Links: each slice names the one before it, also across processes.
  const tokenize = spans.find((s) => s.name === 'tokenize')!
  const dispatch = spans.find((s) => s.name === 'api_server_dispatch')!
  t.same(
    tokenize.links.map((l) => l.spanId),
    [dispatch.spanId],
    'tokenize links to api_server_dispatch (server → tokenizer)',
  )
  const waiting = spans.find((s) => s.name === 'prefill_waiting')!
  const dpc = spans.find((s) => s.name === 'dpc_dispatch')!
  t.same(
    waiting.links.map((l) => l.spanId),
    [dpc.spanId],
    'prefill_waiting links to dpc_dispatch (tokenizer → scheduler)',
  )
  const prefill = spans.find((s) => s.name === 'prefill_forward')!
  t.same(
    prefill.links.map((l) => l.spanId),
    [waiting.spanId],
    'prefill_forward links to prefill_waiting (scheduler → worker)',
  )
  const ordered = decodes.sort((a, b) => Number(BigInt(a.startTimeUnixNano) - BigInt(b.startTimeUnixNano)))
  t.same(
    ordered[0]!.links.map((l) => l.spanId),
    [prefill.spanId],
    'the first decode links to the prefill',
  )
  for (let i = 1; i < ordered.length; i++)
    t.same(
      ordered[i]!.links.map((l) => l.spanId),
      [ordered[i - 1]!.spanId],
    )
  // gen_ai attributes and usage match the response.
  const usage = (body as { usage: { prompt_tokens: number; completion_tokens: number } }).usage
  t.equal(root.attributes['gen_ai.usage.input_tokens'], usage.prompt_tokens)
  t.equal(root.attributes['gen_ai.usage.output_tokens'], usage.completion_tokens)
  t.equal(root.attributes['gen_ai.request.model'], 'default')
  t.equal(root.attributes['gen_ai.response.id'], body.id)
  t.same(root.attributes['gen_ai.response.finish_reasons'], ['length'])
  for (const k of ['time_in_queue', 'time_to_first_token', 'e2e', 'time_in_model_prefill', 'time_in_model_decode']) {
    t.type(root.attributes[`gen_ai.latency.${k}`], 'number', `gen_ai.latency.${k}`)
  }
  t.notOk('gen_ai.prompt' in root.attributes, 'no prompt text without --trace-record-content')
  t.ok(root.events.some((e) => e.name === 'first_token') || spans.some((s) => s.events.some((e) => e.name === 'first_token')), 'first_token event')
  return root
}

for (const protocol of ['grpc', 'http'] as const) {
  t.test(`spans over OTLP ${protocol}`, async (t) => {
    const receiver = await startOtlpReceiver({ protocol })
    t.teardown(() => receiver.close())
    const server = await startServer({
      env: FAST_EXPORT,
      args: ['--trace-enable', '--trace-level', '3', '--otlp-traces-endpoint', receiver.endpoint, '--otlp-traces-protocol', protocol === 'grpc' ? 'grpc' : 'http/protobuf'],
    })
    t.teardown(() => server.stop())

    t.test('a plain completion forms one unbroken tree', async (t) => {
      const caller = callerTraceparent()
      const { res, text } = await complete(server, { prompt: 'Once upon a time', max_tokens: 6 }, caller.header)
      t.equal(res.status, 200)
      const body = JSON.parse(text) as Record<string, unknown>
      const spans = await traceOf(receiver, server, caller.traceId)
      const root = checkTree(t, spans, caller, body)
      const header = res.headers.get('traceparent')!
      t.match(header, new RegExp(`^00-${caller.traceId}-[0-9a-f]{16}-01$`), 'the traceparent response header continues the trace')
      t.equal(header.split('-')[2], root.spanId, 'and names the request root span')
    })

    t.test('a streamed completion too', async (t) => {
      const caller = callerTraceparent()
      const { res, text } = await complete(server, { prompt: 'The little girl', max_tokens: 5, stream: true, stream_options: { include_usage: true } }, caller.header)
      t.match(res.headers.get('traceparent'), new RegExp(`^00-${caller.traceId}-`))
      // The last event before [DONE]: OpenAI's usage chunk.
      const last = text
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
        .at(-1)!
      checkTree(t, await traceOf(receiver, server, caller.traceId), caller, last)
    })

    t.test("nothing is sent when the caller's flag says unsampled", async (t) => {
      const caller = callerTraceparent(false)
      const { res } = await complete(server, { prompt: 'Hello', max_tokens: 3 }, caller.header)
      t.equal(res.status, 200)
      await flushed(receiver, server)
      t.equal(receiver.spans.filter((s) => s.traceId === caller.traceId).length, 0)
      t.match(res.headers.get('traceparent'), new RegExp(`^00-${caller.traceId}-[0-9a-f]{16}-00$`), 'the caller still learns its trace id')
    })
  })
}

t.test('continuous decode steps: still one decode_forward per step at level 3, in one chain', async (t) => {
  const receiver = await startOtlpReceiver({ protocol: 'grpc' })
  t.teardown(() => receiver.close())
  const server = await startServer({ env: FAST_EXPORT, args: ['--trace-enable', '--trace-level', '3', '--otlp-traces-endpoint', receiver.endpoint, '--num-continuous-decode-steps', '3'] })
  t.teardown(() => server.stop())
  const caller = callerTraceparent()
  // One token from the prefill, then 8 decode steps: batches of 3, 3 and 2.
  const { res, text } = await complete(server, { prompt: 'Once upon a time', max_tokens: 9, ignore_eos: true }, caller.header)
  t.equal(res.status, 200)
  const spans = await traceOf(receiver, server, caller.traceId)
  checkTree(t, spans, caller, JSON.parse(text) as Record<string, unknown>)
  const decodes = spans.filter((s) => s.name === 'decode_forward')
  t.equal(decodes.length, 8, 'one slice per decode step')
  const perBatch = new Map<unknown, number>()
  for (const d of decodes) perBatch.set(d.attributes['spanserve.step'], (perBatch.get(d.attributes['spanserve.step']) ?? 0) + 1)
  t.same(
    [...perBatch.values()].sort((a, b) => b - a),
    [3, 3, 2],
    "a batch's steps share its step attribute",
  )
  t.equal(spans.filter((s) => s.name === 'detokenize').length, 4, "one detokenize slice per batch of tokens (the prefill's and three), not per token")
})

t.test('serving is unharmed with the receiver stopped', async (t) => {
  const receiver = await startOtlpReceiver({ protocol: 'grpc' })
  const endpoint = receiver.endpoint
  await receiver.close()
  const server = await startServer({ env: FAST_EXPORT, args: ['--trace-enable', '--otlp-traces-endpoint', endpoint] })
  t.teardown(() => server.stop())
  for (let i = 0; i < 5; i++) {
    const { res } = await complete(server, { prompt: 'Once upon a time', max_tokens: 4 }, callerTraceparent().header)
    t.equal(res.status, 200)
  }
})
