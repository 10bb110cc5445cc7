/**
 * `spanserve trace explain`: where one request's time went, from the spans the processes record,
 * set against the median of the other requests in the same file.
 *
 * A request is an `llm_request` span (one per sequence). Its slices are the descendants of its
 * thread spans, and, when the trace holds only this request, the worker and scheduler slices whose
 * thread span is missing from the file (a SIGKILLed worker never ends its thread span, but the
 * slices it had exported are there). Worker slices are read from tensor-parallel rank 0 only (every
 * rank records the same steps).
 *
 * The parts of end-to-end are disjoint: queue (spanserve.queue.ms of each prefill_waiting),
 * prefill (its own prefill_forward and chunked_prefill runs), decode (its own decode_forward runs,
 * or decode_loop below level 3), stalled (the other requests' prefill chunks that ran, on the same
 * worker, in the steps it decoded in: a step runs its prefill chunks before its decode), restart
 * (for each request_resumed event: from the lost attempt's last model run in the file to the
 * resumed attempt's first, less its queue time), and other (what is left: tokenize, IPC,
 * scheduling, detokenize, streaming).
 */
import {
  GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN,
  GEN_AI_RESPONSE_FINISH_REASONS,
  GEN_AI_USAGE_INPUT_TOKENS,
  GEN_AI_USAGE_OUTPUT_TOKENS,
  SPANSERVE_QUEUE_MS,
  SPANSERVE_REQUEST_ID,
  SPANSERVE_RESUME_WAIT_MS,
  SPANSERVE_STEP,
  SPANSERVE_TP_RANK,
} from '../tracing/attributes.ts'
import { EVENT, REQUEST_ROOT_SPAN, SLICE } from '../tracing/names.ts'
import { processIdentityOf } from './process-identity.ts'
import type { SpanIndex } from './span-index.ts'
import type { SpanRecord } from './span-record.ts'

/** Nothing to explain: no request in the file, or none in the trace asked for (exit status 1). */
export class ExplainError extends Error {}

const PREFILL_SLICES = new Set<string>([SLICE.prefillForward, SLICE.chunkedPrefill])
const DECODE_SLICES = new Set<string>([SLICE.decodeForward, SLICE.decodeLoop])
const MODEL_SLICES = new Set<string>([...PREFILL_SLICES, ...DECODE_SLICES])
/** Slices taken from a trace even when their thread span is not in the file. */
const ORPHAN_SLICES = new Set<string>([...MODEL_SLICES, SLICE.prefillWaiting])

/** The measured values of one request, in milliseconds where a time. */
interface Breakdown {
  e2eMs: number
  ttftMs: number | undefined
  /** Mean time between output tokens after the first. */
  itlMs: number | undefined
  queueMs: number
  prefillMs: number
  decodeMs: number
  stalledMs: number
  restartMs: number
  otherMs: number
}

type MetricKey = keyof Breakdown

interface RequestFacts {
  traceId: string
  rid: string | undefined
  inputTokens: number | undefined
  outputTokens: number | undefined
  finishReasons: string[]
  prefillChunks: number
  decodeSteps: number
  /** Decode steps that shared their batch with another request's prefill chunk (undefined below level 3). */
  stalledSteps: number | undefined
  resumes: number
  failed: boolean
}

interface ExplainedRequest extends RequestFacts {
  root: SpanRecord
  values: Breakdown
}

interface MetricRow {
  key: MetricKey
  label: string
  value: number | undefined
  medianOfOthers: number | undefined
  ratio: number | undefined
}

export interface Explanation {
  request: RequestFacts
  /** How the request was chosen: the slowest in the file (no selection), or the one asked for. */
  chosen: 'slowest' | 'selected'
  /** Requests in the file, this one included. */
  requests: number
  rows: MetricRow[]
}

const METRICS: { key: MetricKey; label: (r: RequestFacts) => string }[] = [
  { key: 'e2eMs', label: () => 'end-to-end' },
  { key: 'ttftMs', label: () => 'time to first token' },
  { key: 'itlMs', label: () => 'inter-token latency (mean)' },
  { key: 'queueMs', label: () => 'queue (waiting to be scheduled)' },
  { key: 'prefillMs', label: (r) => `prefill (${plural(r.prefillChunks, 'model run')})` },
  { key: 'decodeMs', label: (r) => `decode (${plural(r.decodeSteps, 'step')})` },
  {
    key: 'stalledMs',
    label: (r) => `stalled by others' prefills (${r.stalledSteps === undefined ? 'steps at level 3 only' : `${r.stalledSteps} of ${plural(r.decodeSteps, 'step')}`})`,
  },
  { key: 'restartMs', label: (r) => `restarts (${plural(r.resumes, 'resume')})` },
  { key: 'otherMs', label: () => 'other (tokenize, IPC, scheduling, streaming)' },
]

/** Parts of end-to-end, indented under it in the table. */
const PARTS = new Set<MetricKey>(['queueMs', 'prefillMs', 'decodeMs', 'stalledMs', 'restartMs', 'otherMs'])

/**
 * Explains one request of the file: the slowest (by end-to-end) of those in `traceIds` when given,
 * else of the whole file; `rid` picks a request by its id within them.
 */
export function explainRequest(index: SpanIndex, selection: { traceIds?: readonly string[]; rid?: string } = {}): Explanation {
  const roots = index.traceIds().flatMap((t) => index.spansOf(t).filter((s) => s.name === REQUEST_ROOT_SPAN))
  if (roots.length === 0) throw new ExplainError(`no requests in the file: no ${REQUEST_ROOT_SPAN} span (was the file written by spanserve with tracing on?)`)
  const requests = analyse(index, roots)

  let candidates = requests
  if (selection.traceIds !== undefined) {
    const wanted = new Set(selection.traceIds)
    candidates = candidates.filter((r) => wanted.has(r.traceId))
    if (candidates.length === 0) throw new ExplainError(`trace ${selection.traceIds.join(', ')} has no ${REQUEST_ROOT_SPAN} span: nothing to explain`)
  }
  if (selection.rid !== undefined) {
    const byRid = candidates.filter((r) => r.rid === selection.rid)
    if (byRid.length > 0) candidates = byRid
  }
  const chosen = candidates.reduce((a, b) => (b.values.e2eMs > a.values.e2eMs ? b : a))
  const others = requests.filter((r) => r !== chosen)

  const { root: _root, values, ...facts } = chosen
  const rows = METRICS.map(({ key, label }) => {
    const value = values[key]
    const medianOfOthers = median(others.map((r) => r.values[key]).filter((v): v is number => v !== undefined))
    const ratio = value !== undefined && medianOfOthers !== undefined && medianOfOthers > 0 ? value / medianOfOthers : undefined
    return { key, label: label(facts), value, medianOfOthers, ratio }
  })
  return { request: facts, chosen: selection.traceIds === undefined && selection.rid === undefined ? 'slowest' : 'selected', requests: requests.length, rows }
}

/** A prefill run of some request on some worker: what a decode step of another request waited for. */
interface PrefillRun {
  owner: SpanRecord
  startNs: bigint
  endNs: bigint
}

/** Prefill runs by worker process, and by worker process and step. */
interface PrefillRuns {
  byWorker: Map<string, PrefillRun[]>
  byStep: Map<string, PrefillRun[]>
}

/** Measures every request root, with every worker's prefill runs known across requests. */
function analyse(index: SpanIndex, roots: readonly SpanRecord[]): ExplainedRequest[] {
  const rootsPerTrace = new Map<string, number>()
  for (const r of roots) rootsPerTrace.set(r.traceId, (rootsPerTrace.get(r.traceId) ?? 0) + 1)
  const slicesOf = new Map<SpanRecord, SpanRecord[]>()
  for (const root of roots) slicesOf.set(root, requestSlices(index, root, rootsPerTrace.get(root.traceId) === 1))

  const runs: PrefillRuns = { byWorker: new Map(), byStep: new Map() }
  for (const [owner, slices] of slicesOf) {
    for (const s of slices) {
      if (!PREFILL_SLICES.has(s.name)) continue
      const run = { owner, startNs: s.startNs, endNs: s.endNs }
      const worker = processIdentityOf(s.resource).key
      push(runs.byWorker, worker, run)
      const step = s.attributes[SPANSERVE_STEP]
      if (typeof step === 'number') push(runs.byStep, `${worker}#${step}`, run)
    }
  }
  return roots.map((root) => measure(root, slicesOf.get(root)!, runs))
}

function measure(root: SpanRecord, slices: readonly SpanRecord[], runs: PrefillRuns): ExplainedRequest {
  const a = root.attributes
  const e2eMs = ms(root.endNs - root.startNs)
  const prefill = slices.filter((s) => PREFILL_SLICES.has(s.name))
  const decode = slices.filter((s) => DECODE_SLICES.has(s.name))
  const waiting = slices.filter((s) => s.name === SLICE.prefillWaiting)
  const queueOf = (s: SpanRecord): number => numberOf(s.attributes[SPANSERVE_QUEUE_MS]) ?? ms(s.endNs - s.startNs)

  const queueMs = sum(waiting.map(queueOf))
  const prefillMs = sum(prefill.map((s) => ms(s.endNs - s.startNs)))
  const decodeMs = sum(decode.map((s) => ms(s.endNs - s.startNs)))
  const steps = decode.filter((s) => s.name === SLICE.decodeForward)
  const loops = decode.filter((s) => s.name === SLICE.decodeLoop)

  // Level 3: other requests' prefill runs in the steps this request decoded in (once per step: a
  // step runs its prefill chunks, then its decode steps).
  let stalledMs = 0
  let stalledSteps: number | undefined = steps.length > 0 || loops.length === 0 ? 0 : undefined
  const seenSteps = new Set<string>()
  for (const s of steps) {
    const step = s.attributes[SPANSERVE_STEP]
    if (typeof step !== 'number') continue
    const key = `${processIdentityOf(s.resource).key}#${step}`
    if (seenSteps.has(key)) continue
    seenSteps.add(key)
    const others = (runs.byStep.get(key) ?? []).filter((p) => p.owner !== root)
    if (others.length === 0) continue
    stalledMs += sum(others.map((p) => ms(p.endNs - p.startNs)))
    stalledSteps = (stalledSteps ?? 0) + 1
  }
  // Below level 3 (decode_loop, no steps): other requests' prefill runs on the same worker during the loop.
  for (const loop of loops) {
    for (const p of runs.byWorker.get(processIdentityOf(loop.resource).key) ?? []) {
      if (p.owner === root) continue
      const from = p.startNs > loop.startNs ? p.startNs : loop.startNs
      const to = p.endNs < loop.endNs ? p.endNs : loop.endNs
      if (to > from) stalledMs += ms(to - from)
    }
  }

  // Restarts: for each resume, from the lost attempt's last model run in the file to the resumed
  // attempt's first, less the time the resumed attempt queued.
  const resumes = root.events.filter((e) => e.name === EVENT.requestResumed)
  const model = slices.filter((s) => MODEL_SLICES.has(s.name))
  let restartMs = 0
  for (const e of resumes) {
    let before: bigint | undefined
    let after: bigint | undefined
    for (const s of model) {
      if (s.endNs <= e.timeNs && (before === undefined || s.endNs > before)) before = s.endNs
      if (s.startNs >= e.timeNs && (after === undefined || s.startNs < after)) after = s.startNs
    }
    // No run of the lost attempt in the file: the wait the server measured stands for it.
    const fromMs = before !== undefined ? ms(before - root.startNs) : ms(e.timeNs - root.startNs) - (numberOf(e.attributes[SPANSERVE_RESUME_WAIT_MS]) ?? 0)
    const toMs = ms((after ?? root.endNs) - root.startNs)
    const requeuedMs = sum(waiting.filter((s) => s.startNs >= e.timeNs && (after === undefined || s.startNs <= after)).map(queueOf))
    restartMs += Math.max(0, toMs - fromMs - requeuedMs)
  }

  const outputTokens = numberOf(a[GEN_AI_USAGE_OUTPUT_TOKENS])
  const ttftSeconds = numberOf(a[GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN])
  const firstToken = [root, ...slices].flatMap((s) => s.events).find((e) => e.name === EVENT.firstToken)
  const ttftMs = ttftSeconds !== undefined ? ttftSeconds * 1000 : firstToken !== undefined ? ms(firstToken.timeNs - root.startNs) : undefined
  const itlMs = ttftMs !== undefined && outputTokens !== undefined && outputTokens > 1 ? (e2eMs - ttftMs) / (outputTokens - 1) : undefined
  const finish = a[GEN_AI_RESPONSE_FINISH_REASONS]
  const rid = a[SPANSERVE_REQUEST_ID]
  return {
    root,
    traceId: root.traceId,
    rid: typeof rid === 'string' ? rid : undefined,
    inputTokens: numberOf(a[GEN_AI_USAGE_INPUT_TOKENS]),
    outputTokens,
    finishReasons: Array.isArray(finish) ? finish.map(String) : finish === undefined ? [] : [String(finish)],
    prefillChunks: prefill.length,
    decodeSteps: steps.length,
    stalledSteps,
    resumes: resumes.length,
    failed: root.status.code === 2,
    values: {
      e2eMs,
      ttftMs,
      itlMs,
      queueMs,
      prefillMs,
      decodeMs,
      stalledMs,
      restartMs,
      otherMs: e2eMs - queueMs - prefillMs - decodeMs - stalledMs - restartMs,
    },
  }
}

/** The request's slices: below its thread spans, plus (when the trace is this request's alone) slices whose thread span is missing. */
function requestSlices(index: SpanIndex, root: SpanRecord, onlyRequestInTrace: boolean): SpanRecord[] {
  const out: SpanRecord[] = []
  const seen = new Set<SpanRecord>()
  const visit = (s: SpanRecord): void => {
    for (const c of index.childrenOf(s)) {
      if (seen.has(c)) continue
      seen.add(c)
      out.push(c)
      visit(c)
    }
  }
  visit(root)
  if (onlyRequestInTrace) {
    for (const s of index.spansOf(root.traceId)) {
      if (!seen.has(s) && ORPHAN_SLICES.has(s.name) && s.parentSpanId !== undefined && index.parentOf(s) === undefined) out.push(s)
    }
  }
  // Every tensor-parallel rank records the same steps: rank 0 (or no rank) speaks for them.
  return out.filter((s) => {
    const tp = s.resource[SPANSERVE_TP_RANK]
    return tp === undefined || tp === 0 || tp === '0'
  })
}

// --- output ---

/** The terminal table: the request's value, the median of the others, the ratio. */
export function renderExplanation(x: Explanation, file: string): string {
  const r = x.request
  const lines: string[] = []
  lines.push(`request ${r.rid ?? '-'}  trace ${r.traceId}`)
  if (x.chosen === 'slowest') lines.push(`the slowest of the ${plural(x.requests, 'request')} in ${file} (by end-to-end; give --trace or --rid for another)`)
  const facts = [`tokens ${r.inputTokens ?? '?'} in, ${r.outputTokens ?? '?'} out`]
  if (r.finishReasons.length > 0) facts.push(`finish ${r.finishReasons.join(',')}`)
  if (r.resumes > 0) facts.push(`resumed ${r.resumes === 1 ? 'once' : `${r.resumes} times`}`)
  if (r.failed) facts.push('FAILED')
  lines.push(facts.join(', '))
  lines.push('')
  const others = x.requests - 1
  const head = ['', 'this request', others === 0 ? 'no others' : `median of ${others} other${others === 1 ? '' : 's'}`, 'ratio']
  const rows = x.rows.map((row) => [(PARTS.has(row.key) ? '  ' : '') + row.label, msCell(row.value), msCell(row.medianOfOthers), ratioCell(row.ratio)])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const format = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  lines.push(format(head))
  for (const row of rows) lines.push(format(row))
  return lines.join('\n') + '\n'
}

/** The same for machines: times in milliseconds (3 decimals), null where unknown. */
export function explanationJson(x: Explanation, file: string): string {
  const round = (v: number | undefined): number | null => (v === undefined ? null : Math.round(v * 1000) / 1000)
  const metrics: Record<string, { value: number | null; median_of_others: number | null; ratio: number | null }> = {}
  for (const row of x.rows) metrics[JSON_KEYS[row.key]] = { value: round(row.value), median_of_others: round(row.medianOfOthers), ratio: round(row.ratio) }
  const r = x.request
  return (
    JSON.stringify(
      {
        file,
        chosen: x.chosen,
        requests: x.requests,
        trace_id: r.traceId,
        rid: r.rid ?? null,
        input_tokens: r.inputTokens ?? null,
        output_tokens: r.outputTokens ?? null,
        finish_reasons: r.finishReasons,
        failed: r.failed,
        prefill_runs: r.prefillChunks,
        decode_steps: r.decodeSteps,
        stalled_steps: r.stalledSteps ?? null,
        resumes: r.resumes,
        metrics,
      },
      null,
      2,
    ) + '\n'
  )
}

const JSON_KEYS: Record<MetricKey, string> = {
  e2eMs: 'e2e_ms',
  ttftMs: 'ttft_ms',
  itlMs: 'itl_ms',
  queueMs: 'queue_ms',
  prefillMs: 'prefill_ms',
  decodeMs: 'decode_ms',
  stalledMs: 'stalled_by_other_prefills_ms',
  restartMs: 'restart_ms',
  otherMs: 'other_ms',
}

function msCell(v: number | undefined): string {
  return v === undefined ? '-' : `${v.toFixed(3)} ms`
}

function ratioCell(v: number | undefined): string {
  return v === undefined ? '-' : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}×`
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((x, y) => x - y)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function sum(values: readonly number[]): number {
  let total = 0
  for (const v of values) total += v
  return total
}

function ms(ns: bigint): number {
  return Number(ns) / 1e6
}

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'string' && v !== '' && Number.isFinite(Number(v))) return Number(v)
  return undefined
}
