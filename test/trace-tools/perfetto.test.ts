import t, { type Test } from 'tap'
import { formatChromeTrace, toChromeTrace, type ChromeTraceEvent } from '../../src/trace-tools/perfetto.ts'
import type { SpanRecord } from '../../src/trace-tools/span-record.ts'
import { FIXTURE, fixtureSpans, span } from './fixture.ts'

// Perfetto rounds µs to ns; a tolerance far below that absorbs float rounding of ts + dur.
const EPS = 1e-6

const trackOf = (e: ChromeTraceEvent): string => `${e.pid}/${e.tid}`
const endOf = (e: ChromeTraceEvent): number => e.ts! + e.dur!

/** Slices on one track must nest: each one ends before the slice it starts inside ends. */
function assertTracksNest(t: Test, slices: ChromeTraceEvent[]): void {
  const byTrack = new Map<string, ChromeTraceEvent[]>()
  for (const e of slices) byTrack.set(trackOf(e), [...(byTrack.get(trackOf(e)) ?? []), e])
  let bad = 0
  for (const [track, events] of byTrack) {
    const sorted = [...events].sort((a, b) => a.ts! - b.ts! || b.dur! - a.dur!)
    const stack: ChromeTraceEvent[] = []
    for (const e of sorted) {
      while (stack.length > 0 && endOf(stack.at(-1)!) <= e.ts! + EPS) stack.pop()
      const outer = stack.at(-1)
      if (outer !== undefined && endOf(e) > endOf(outer) + EPS) {
        bad++
        t.fail(`${e.name} overlaps ${outer.name} without nesting on track ${track}`)
      }
      stack.push(e)
    }
  }
  t.equal(bad, 0, 'every track holds properly nested slices')
}

t.test('the recorded trace converts to loadable Chrome trace JSON', async (t) => {
  const spans = fixtureSpans()
  const trace = toChromeTrace(spans)
  const parsed = JSON.parse(formatChromeTrace(trace)) as typeof trace
  t.same(parsed, JSON.parse(JSON.stringify(trace)), 'the formatted text is the same JSON')
  t.equal(parsed.displayTimeUnit, 'ms')
  t.ok(Array.isArray(parsed.traceEvents))
  const events = parsed.traceEvents
  const slices = events.filter((e) => e.ph === 'X')
  const byId = new Map(slices.map((e) => [e.args!.span_id as string, e]))

  t.test('one process track per OS process, named by role and ranks', async (t) => {
    const names = events.filter((e) => e.ph === 'M' && e.name === 'process_name')
    t.equal(names.length, FIXTURE.processes)
    t.same(
      names.map((e) => e.args!.name),
      ['Server', 'Tokenizer', 'Scheduler [DP 0]', 'Scheduler [DP 1]', 'Worker [TP 0] [DP 0]', 'Worker [TP 0] [DP 1]'],
      'ordered as a request flows',
    )
    const pidOf = new Map<unknown, number>()
    for (const s of spans) {
      const pid = byId.get(s.spanId)!.pid
      t.equal(pid, s.resource['process.pid'], `${s.name} on its process's track`)
      pidOf.set(s.resource['process.pid'], pid)
    }
    t.same(new Set(names.map((e) => e.pid)), new Set(pidOf.values()))
    for (const e of slices)
      t.ok(
        events.some((m) => m.ph === 'M' && m.name === 'thread_name' && m.pid === e.pid && m.tid === e.tid),
        'lane named',
      )
  })

  t.test('every span appears exactly once, with its rid and attributes', async (t) => {
    t.equal(slices.length, spans.length)
    t.same(new Set(slices.map((e) => e.args!.span_id)), new Set(spans.map((s) => s.spanId)))
    const ridOf = new Map(spans.filter((s) => s.name === 'llm_request').map((s) => [s.traceId, s.attributes['spanserve.request.id']]))
    for (const e of slices) t.equal(e.args!.rid, ridOf.get(e.args!.trace_id as string), `${e.name} has its request's rid`)
    const root = slices.find((e) => e.name === 'llm_request' && e.args!.rid === FIXTURE.rid)!
    t.equal(root.args!['gen_ai.usage.output_tokens'], 8)
    t.same(root.args!['gen_ai.response.finish_reasons'], ['length'])
    const decode = slices.find((e) => e.name === 'decode_forward' && e.args!.rid === FIXTURE.rid)!
    t.equal(decode.args!['gen_ai.request.model'], 'default', 'request context on every slice')
    t.type(decode.args!['spanserve.batch.size'], 'number')
    for (const e of slices) {
      t.ok(e.ts! >= 0 && e.dur! >= 0, 'relative µs, never negative')
    }
  })

  t.test('every slice nests within its parent on the same track', async (t) => {
    let sameTrack = 0
    for (const e of slices) {
      const parent = byId.get(e.args!.parent_span_id as string)
      if (parent === undefined || trackOf(parent) !== trackOf(e)) continue
      sameTrack++
      t.ok(e.ts! >= parent.ts! - EPS && endOf(e) <= endOf(parent) + EPS, `${e.name} within ${parent.name}`)
    }
    t.ok(sameTrack > spans.length / 2, 'most slices share their parent track')
    assertTracksNest(t, slices)
    // A thread span and its slices share a track: the request's presence in that process.
    for (const e of slices.filter((e) => /^(Tokenizer|Scheduler|Worker) \[/.test(e.name))) {
      const kids = slices.filter((k) => k.args!.parent_span_id === e.args!.span_id)
      t.ok(kids.length > 0)
      for (const k of kids) t.equal(trackOf(k), trackOf(e), `${k.name} on ${e.name}'s track`)
    }
  })

  t.test('links are flow arrows from the previous slice to the next', async (t) => {
    const flows = events.filter((e) => e.ph === 's' || e.ph === 'f')
    const linkCount = spans.reduce((n, s) => n + s.links.filter((l) => byId.has(l.spanId)).length, 0)
    t.ok(linkCount > 20)
    t.equal(flows.length, 2 * linkCount)
    const ids = new Map<number, ChromeTraceEvent[]>()
    for (const f of flows) ids.set(f.id!, [...(ids.get(f.id!) ?? []), f])
    for (const [id, pair] of ids) {
      t.same(
        pair.map((e) => e.ph),
        ['s', 'f'],
        `flow ${id}: one start, one finish`,
      )
      t.equal(pair[1]!.bp, 'e')
    }
    // Each end lies inside the slice it binds to.
    for (const s of spans) {
      for (const link of s.links) {
        const from = byId.get(link.spanId)
        if (from === undefined) continue
        const to = byId.get(s.spanId)!
        const pair = [...ids.values()].find(([start, finish]) => trackOf(start!) === trackOf(from) && trackOf(finish!) === trackOf(to) && within(start!, from) && within(finish!, to))
        t.ok(pair, `${from.name} → ${to.name}`)
      }
    }
    // The cross-process hand-off: the first worker slice links to the scheduler's.
    const prefill = spans.find((s) => s.traceId === FIXTURE.traceId && s.name === 'prefill_forward')!
    t.equal(spans.find((s) => s.spanId === prefill.links[0]!.spanId)!.name, 'prefill_waiting')
  })

  t.test('span events are thread-scoped instants on their span track', async (t) => {
    const instants = events.filter((e) => e.ph === 'i')
    t.equal(
      instants.length,
      spans.reduce((n, s) => n + s.events.length, 0),
    )
    t.same(new Set(instants.map((e) => e.name)), new Set(['first_token', 'finished']))
    for (const e of instants) {
      t.equal(e.s, 't')
      t.equal(trackOf(e), trackOf(byId.get(e.args!.span_id as string)!))
      t.type(e.args!.rid, 'string')
    }
  })
})

t.test('output is deterministic whatever the input order', async (t) => {
  const spans = fixtureSpans()
  const shuffled = [...spans].reverse()
  shuffled.push(...shuffled.splice(0, 31))
  t.equal(formatChromeTrace(toChromeTrace(shuffled)), formatChromeTrace(toChromeTrace(spans)))
})

t.test('layout fix-ups keep tracks nested', async (t) => {
  t.test('a parent ending before its last child is widened to cover it', async (t) => {
    const thread = span({ name: 'thread', startMs: 0, endMs: 10 })
    const late = span({ name: 'late', startMs: 9, endMs: 12, parentSpanId: thread.spanId })
    const events = toChromeTrace([thread, late]).traceEvents.filter((e) => e.ph === 'X')
    const [p, c] = [events.find((e) => e.name === 'thread')!, events.find((e) => e.name === 'late')!]
    t.equal(trackOf(p), trackOf(c))
    t.equal(endOf(p), 12000)
    t.equal(p.args!.display_adjusted, 'widened to cover children')
    t.equal(p.args!.recorded_dur, 10000, 'the recorded duration stays visible')
    t.equal(c.dur, 3000, 'the child keeps its own time')
  })

  t.test('a millisecond-clock overlap between sequential slices moves the later start', async (t) => {
    const thread = span({ name: 'thread', startMs: 0, endMs: 10 })
    const a = span({ name: 'tokenize', startMs: 1, endMs: 3.08, parentSpanId: thread.spanId })
    const b = span({ name: 'dispatch', startMs: 3, endMs: 4, parentSpanId: thread.spanId })
    const events = toChromeTrace([thread, a, b]).traceEvents.filter((e) => e.ph === 'X')
    const moved = events.find((e) => e.name === 'dispatch')!
    t.equal(moved.ts, 3080)
    t.equal(moved.dur, 920)
    t.equal(moved.args!.display_adjusted, 'start moved to previous sibling end')
    t.equal(new Set(events.map(trackOf)).size, 1)
  })

  t.test('truly concurrent siblings go to separate lanes; the bigger subtree stays', async (t) => {
    const http = span({ name: 'request', startMs: 0, endMs: 100, pid: 7 })
    const handler = span({ name: 'handler', startMs: 1, endMs: 99, parentSpanId: http.spanId, pid: 7 })
    const root = span({ name: 'llm_request', startMs: 2, endMs: 98, parentSpanId: http.spanId, pid: 7 })
    const thread = span({ name: 'Server [h 7]', startMs: 2, endMs: 98, parentSpanId: root.spanId, pid: 7 })
    const onSend = span({ name: 'onSend', startMs: 97, endMs: 97.5, parentSpanId: http.spanId, pid: 7 })
    const events = toChromeTrace([http, handler, root, thread, onSend]).traceEvents.filter((e) => e.ph === 'X')
    const tid = (name: string): number => events.find((e) => e.name === name)!.tid!
    t.equal(tid('llm_request'), tid('request'), 'llm_request stays under the HTTP span')
    t.equal(tid('Server [h 7]'), tid('request'))
    t.not(tid('handler'), tid('request'))
    t.not(tid('onSend'), tid('request'), 'inside llm_request in time, not its child: moved')
    assertTracksNest(t, events)
  })

  t.test('requests reuse lanes once done; overlapping ones get their own', async (t) => {
    const spans: SpanRecord[] = []
    for (const [i, [start, end]] of [
      [0, 10],
      [5, 15],
      [11, 20],
      [16, 30],
    ].entries()) {
      const traceId = String(i + 1).repeat(32)
      const thread = span({ name: `req ${i}`, traceId, startMs: start!, endMs: end! })
      spans.push(thread, span({ name: 'slice', traceId, startMs: start!, endMs: end!, parentSpanId: thread.spanId }))
    }
    const trace = toChromeTrace(spans)
    const tid = (name: string): number => trace.traceEvents.find((e) => e.ph === 'X' && e.name === name)!.tid!
    t.same([tid('req 0'), tid('req 1'), tid('req 2'), tid('req 3')], [1, 2, 1, 2])
    t.equal(trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').length, 2)
  })

  t.test('processes without pids, or repeating them across hosts, get numbered tracks', async (t) => {
    const a = span({ name: 'a', startMs: 0, endMs: 1, resource: { 'host.name': 'h1', 'process.pid': 9, 'spanserve.process.role': 'worker' } })
    const b = span({ name: 'b', startMs: 0, endMs: 1, resource: { 'host.name': 'h2', 'process.pid': 9, 'spanserve.process.role': 'worker' } })
    const c = span({ name: 'c', startMs: 0, endMs: 1, resource: { 'service.name': 'client' } })
    const names = toChromeTrace([a, b, c]).traceEvents.filter((e) => e.name === 'process_name')
    t.same(
      names.map((e) => [e.pid, e.args!.name]),
      [
        [1, 'client'],
        [2, 'Worker [h1]'],
        [3, 'Worker [h2]'],
      ],
    )
  })
})

function within(point: ChromeTraceEvent, slice: ChromeTraceEvent): boolean {
  return point.ts! >= slice.ts! - EPS && point.ts! <= endOf(slice) + EPS
}
