import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseOtlpJson, readOtlpJsonFile, TraceFileError } from '../../src/trace-tools/otlp-json.ts'
import type { SpanRecord } from '../../src/trace-tools/span-record.ts'
import { FIXTURE, FIXTURE_PATH, fixtureSpans, fixtureText } from './fixture.ts'

const quiet = { warn: () => {} }

t.test('reads the recorded file into plain span records', async (t) => {
  const spans = await readOtlpJsonFile(FIXTURE_PATH, quiet)
  t.equal(spans.length, FIXTURE.spans)
  t.equal(new Set(spans.map((s) => s.traceId)).size, FIXTURE.traces)
  t.equal(new Set(spans.map((s) => s.resource['process.pid'])).size, FIXTURE.processes)
  for (const s of spans) {
    t.match(s.traceId, /^[0-9a-f]{32}$/)
    t.match(s.spanId, /^[0-9a-f]{16}$/)
    t.equal(typeof s.startNs, 'bigint')
    t.ok(s.endNs >= s.startNs)
  }

  const root = spans.find((s) => s.name === 'llm_request' && s.attributes['spanserve.request.id'] === FIXTURE.rid)!
  t.ok(root)
  t.equal(root.traceId, FIXTURE.traceId)
  t.same(root.attributes['gen_ai.response.finish_reasons'], ['length'])
  t.equal(root.attributes['gen_ai.usage.output_tokens'], 8)
  t.equal(typeof root.attributes['gen_ai.latency.e2e'], 'number')
  t.equal(root.resource['spanserve.process.role'], 'server')

  const http = spans.find((s) => s.traceId === FIXTURE.traceId && s.name === 'request')!
  t.equal(http.kind, 2, 'server kind')
  t.equal(http.parentSpanId, undefined, 'root of the file: no parent')
  t.equal(http.scope.name, '@fastify/otel')

  const decode = spans.find((s) => s.traceId === FIXTURE.traceId && s.name === 'decode_forward')!
  t.equal(decode.links.length, 1)
  t.equal(decode.links[0]!.traceId, FIXTURE.traceId)
  const server = spans.find((s) => s.traceId === FIXTURE.traceId && s.name.startsWith('Server ['))!
  t.same(
    server.events.map((e) => e.name),
    ['first_token', 'finished'],
  )
  t.same(server.events[1]!.attributes, { 'gen_ai.response.finish_reasons': ['length'] })
})

t.test('the Collector encoding (int64 as strings, enum names, base64 ids) reads the same', async (t) => {
  const jsSdk = fixtureSpans()
  const collector = fixtureText()
    .replace(/"intValue":(\d+)/g, '"intValue":"$1"')
    .replace(/"kind":2/g, '"kind":"SPAN_KIND_SERVER"')
    .replace(/"code":0/g, '"code":"STATUS_CODE_UNSET"')
    .replace(/"(traceId|spanId|parentSpanId)":"([0-9a-f]+)"/g, (_m, k: string, hex: string) => `"${k}":"${Buffer.from(hex, 'hex').toString('base64')}"`)
  t.not(collector, fixtureText())
  t.same(parseOtlpJson(collector, quiet), jsSdk)
})

t.test('a single document, pretty-printed, or an array of documents', async (t) => {
  const docs = fixtureText()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l))
  const expected = fixtureSpans()
  const first = parseOtlpJson(JSON.stringify(docs[0], null, 2), quiet)
  t.ok(first.length > 0)
  t.same(first, expected.slice(0, first.length))
  t.same(parseOtlpJson(JSON.stringify(docs, null, 2), quiet), expected)
  t.same(parseOtlpJson(JSON.stringify(docs), quiet), expected)
})

t.test('a truncated last line (a process still writing) is skipped with a warning', async (t) => {
  const text = fixtureText()
  const lastLine = text.trimEnd().split('\n').at(-1)!
  const truncated = text + lastLine.slice(0, 200) // a second copy of the last batch, cut short
  const warnings: string[] = []
  const spans = parseOtlpJson(truncated, { source: 't.jsonl', warn: (m) => warnings.push(m) })
  t.equal(spans.length, FIXTURE.spans)
  t.equal(warnings.length, 1)
  t.match(warnings[0], /t\.jsonl: skipped incomplete last line 7/)

  const dir = t.testdir({ 'trace.jsonl': truncated })
  const fromFile: string[] = []
  t.equal((await readOtlpJsonFile(join(dir, 'trace.jsonl'), { warn: (m) => fromFile.push(m) })).length, FIXTURE.spans)
  t.match(fromFile, [/incomplete last line 7/])
})

t.test('a bad line in the middle is skipped and reported by number', async (t) => {
  const lines = fixtureText().trimEnd().split('\n')
  lines.splice(2, 0, '{"resourceSpans": [oops')
  const warnings: string[] = []
  const spans = parseOtlpJson(lines.join('\n'), { warn: (m) => warnings.push(m) })
  t.equal(spans.length, FIXTURE.spans)
  t.match(warnings, [/skipped line\(s\) 3: not valid JSON/])
})

t.test('repeated spans (concatenated files) are kept once', async (t) => {
  const text = fixtureText()
  t.equal(parseOtlpJson(text + text, quiet).length, FIXTURE.spans)
})

t.test('a file with no spans is an error, not an empty result', async (t) => {
  t.throws(() => parseOtlpJson('', quiet), TraceFileError)
  t.throws(() => parseOtlpJson('hello\nworld\n', quiet), { name: 'TraceFileError', message: /not OTLP JSON/ })
  t.throws(() => parseOtlpJson('{"resourceSpans":[]}\n', quiet), { message: /no spans found/ })
  const warnings: string[] = []
  t.throws(() => parseOtlpJson('{"level":30,"msg":"a log line"}\n', { warn: (m) => warnings.push(m) }), TraceFileError)
  t.match(warnings, [/has no resourceSpans/])
})

t.test('values: every AnyValue kind, big int64, missing end time', async (t) => {
  const doc = {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'process.pid', value: { intValue: '42' } }] },
        scopeSpans: [
          {
            scope: { name: 's', version: '1' },
            spans: [
              {
                traceId: '0af7651916cd43dd8448eb211c80319c',
                spanId: 'b7ad6b7169203331',
                parentSpanId: '',
                name: 'x',
                startTimeUnixNano: '1795304609843000001',
                attributes: [
                  { key: 'big', value: { intValue: '9007199254740993' } },
                  { key: 'd', value: { doubleValue: 'NaN' } },
                  { key: 'b', value: { boolValue: true } },
                  { key: 'arr', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 1 }] } } },
                  { key: 'kv', value: { kvlistValue: { values: [{ key: 'k', value: { stringValue: 'v' } }] } } },
                  { key: 'empty', value: {} },
                ],
                status: { code: 2, message: 'boom' },
              },
            ],
          },
        ],
      },
    ],
  }
  const [s] = parseOtlpJson(JSON.stringify(doc), quiet) as [SpanRecord]
  t.equal(s.parentSpanId, undefined, 'an empty parent id means none')
  t.equal(s.startNs, 1795304609843000001n, 'nanoseconds exact')
  t.equal(s.endNs, s.startNs)
  t.equal(s.attributes.big, '9007199254740993', 'an int64 a double would round stays a string')
  t.ok(Number.isNaN(s.attributes.d))
  t.same(s.attributes.arr, ['a', 1])
  t.same(s.attributes.kv, { k: 'v' })
  t.equal(s.attributes.empty, null)
  t.same(s.status, { code: 2, message: 'boom' })
  t.same(s.resource, { 'process.pid': 42 })
  t.same(s.scope, { name: 's', version: '1' })
})

t.test('an unreadable file rejects with the fs error', async (t) => {
  const dir = t.testdir({})
  await t.rejects(readOtlpJsonFile(join(dir, 'missing.jsonl'), quiet), { code: 'ENOENT' })
  writeFileSync(join(dir, 'empty.jsonl'), '')
  await t.rejects(readOtlpJsonFile(join(dir, 'empty.jsonl'), quiet), TraceFileError)
})
