import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tracing from '../../src/tracing/index.ts'
import { tracingOptions } from './fixtures/harness.ts'

t.test('file exporter writes OTLP/JSON lines the Collector file exporter would', async (t) => {
  const dir = t.testdir()
  const filePath = join(dir, 'sub', 'trace.jsonl')
  await tracing.initTracing(tracingOptions({ exporter: 'file', filePath, recordContent: true, attributeValueLengthLimit: 16 }), { role: 'tokenizer' })
  t.teardown(() => tracing.shutdownTracing())
  tracing.reqStart('f1', null, { root: true, attributes: tracing.contentAttributes('a prompt that is longer than sixteen chars') })
  tracing.sliceStart('f1', 'tokenize')
  tracing.sliceEnd('f1', 'tokenize', { attributes: { n: 3, ok: true, x: 1.5 } })
  tracing.event('f1', 'first_token')
  tracing.reqFinish('f1', { error: 'bad' })
  await tracing.shutdownTracing()

  const lines = readFileSync(filePath, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
  t.ok(lines.length >= 1)
  const spans: any[] = []
  for (const line of lines) {
    const req = JSON.parse(line)
    t.ok(Array.isArray(req.resourceSpans))
    for (const rs of req.resourceSpans) {
      t.ok(rs.resource.attributes.some((a: any) => a.key === 'spanserve.process.role' && a.value.stringValue === 'tokenizer'))
      for (const ss of rs.scopeSpans) {
        t.equal(ss.scope.name, 'spanserve')
        spans.push(...ss.spans)
      }
    }
  }
  t.equal(spans.length, 3)
  const root = spans.find((s) => s.name === 'llm_request')
  const tok = spans.find((s) => s.name === 'tokenize')
  const thread = spans.find((s) => s.name.startsWith('Tokenizer ['))
  t.match(root.traceId, /^[0-9a-f]{32}$/)
  t.match(root.spanId, /^[0-9a-f]{16}$/)
  t.equal(thread.parentSpanId, root.spanId)
  t.equal(tok.parentSpanId, thread.spanId)
  t.type(root.startTimeUnixNano, 'string')
  t.match(root.startTimeUnixNano, /^\d{19}$/)
  t.equal(root.status.code, 2)
  const attr = (span: any, key: string) => span.attributes.find((a: any) => a.key === key)?.value
  t.same(attr(root, 'gen_ai.prompt'), { stringValue: 'a prompt that is' }, 'content cut to the length limit')
  t.equal(Number(attr(tok, 'n').intValue), 3)
  t.same(attr(tok, 'ok'), { boolValue: true })
  t.same(attr(tok, 'x'), { doubleValue: 1.5 })
  t.ok(thread.events.some((e: any) => e.name === 'first_token'))
})

t.test('console exporter: one readable line per span', async (t) => {
  const lines: string[] = []
  await tracing.initTracing(tracingOptions({ exporter: 'console' }), { role: 'server' }, { consoleWrite: (l) => lines.push(l) })
  t.teardown(() => tracing.shutdownTracing())
  tracing.reqStart('c1', null, { root: true })
  tracing.sliceStart('c1', 'tokenize')
  tracing.sliceEnd('c1', 'tokenize')
  tracing.reqFinish('c1')
  await tracing.shutdownTracing()
  t.equal(lines.length, 3)
  for (const line of lines) {
    t.notMatch(line, /\n/)
    t.match(line, /^\[trace\] \S.* trace=[0-9a-f]{32} span=[0-9a-f]{16} parent=([0-9a-f]{16}|-) dur=\d+\.\d{3}ms/)
  }
  t.ok(lines.some((l) => l.startsWith('[trace] tokenize ')))
})

t.test('content is not recorded unless asked for', async (t) => {
  await tracing.initTracing(tracingOptions({ exporter: 'console' }), { role: 'server' }, { consoleWrite: () => {} })
  t.teardown(() => tracing.shutdownTracing())
  t.equal(tracing.contentAttributes('secret prompt', 'secret completion'), undefined)
})
