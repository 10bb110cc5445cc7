import t from 'tap'
import { formatTraceparent, makeCarrier, parseTraceparent, readCarrier, validTracestate } from '../../src/tracing/propagation.ts'

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

t.test('traceparent parses and formats', async (t) => {
  const sc = parseTraceparent(TP)!
  t.equal(sc.traceId, '0af7651916cd43dd8448eb211c80319c')
  t.equal(sc.spanId, 'b7ad6b7169203331')
  t.equal(sc.traceFlags, 1)
  t.equal(sc.isRemote, true)
  t.equal(formatTraceparent(sc), TP)
  t.equal(parseTraceparent(TP.replace(/-01$/, '-00'))!.traceFlags, 0)
  t.ok(parseTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra'), 'future versions may append fields')
})

t.test('malformed values read as absent and never throw', async (t) => {
  for (const bad of [
    undefined,
    null,
    42,
    {},
    '',
    'garbage',
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331', // missing flags
    '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01', // upper case
    '00-00000000000000000000000000000000-b7ad6b7169203331-01', // zero trace id
    '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01', // zero span id
    'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', // forbidden version
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x', // v00 with extra
    '00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01', // non-hex
  ]) {
    t.equal(parseTraceparent(bad), null, String(bad))
  }
  t.equal(readCarrier('{not json'), null)
  t.equal(readCarrier({ traceparent: 'nope' }), null)
  t.equal(readCarrier(null), null)
  t.equal(validTracestate('Bad Key=1'), undefined)
  t.equal(validTracestate('a'.repeat(600)), undefined)
})

t.test('carriers round-trip through JSON; a bad prev or tracestate is dropped, not fatal', async (t) => {
  const root = parseTraceparent(TP)!
  const prev = parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01')!
  const c = makeCarrier(root, prev, 'vendor=abc')
  t.same(readCarrier(JSON.stringify(c)), c)
  t.same(readCarrier({ traceparent: TP, prev: 'x', tracestate: 'BAD KEY' }), { traceparent: TP })
  t.equal(validTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')
})
