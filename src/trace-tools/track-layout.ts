/**
 * Places spans on timeline tracks so that every track holds properly nested slices, which is
 * what the Chrome/Perfetto JSON importers need (they drop or mis-stack slices that overlap
 * without nesting). One process track per OS process; within it, lanes (thread tracks), each
 * holding one request's spans in that process at a time and reused once it is done, as SGLang's
 * converter lays out its slots.
 *
 * Real spans need three fix-ups, each recorded on the placement:
 * - a parent that ends before its child (a thread span closed before its last slice's end was
 *   stamped) is widened to cover its children;
 * - a slice whose whole-millisecond start falls less than a millisecond before its previous
 *   sibling's end is started at that end: the SDK stamps a start given no explicit time from
 *   Date.now(), a millisecond clock, so the overlap is an artefact and the true start lies later;
 * - a child that otherwise overlaps a sibling runs concurrently with it (e.g. @fastify/otel's
 *   handler span beside llm_request): one of them moves, with its subtree, to a lane of its own.
 */
import { compareProcesses, processIdentityOf, type ProcessIdentity } from './process-identity.ts'
import { spanKey, type SpanIndex } from './span-index.ts'
import type { SpanRecord } from './span-record.ts'

const START_RESOLUTION_NS = 1_000_000n

export interface Placement {
  /** Process track id (the OS pid when every process has a distinct one). */
  pid: number
  /** Lane within the process, from 1. */
  tid: number
  /** Display range; equals the span's own unless `adjusted` says why not. */
  startNs: bigint
  endNs: bigint
  adjusted?: 'widened to cover children' | 'start moved to previous sibling end' | 'clamped into parent'
  /** Nesting depth on its lane (0 = outermost). */
  depth: number
}

interface ProcessTrack {
  pid: number
  identity: ProcessIdentity
  /** Display name: the identity's label, with the host when spans come from several hosts. */
  name: string
  laneCount: number
}

export interface TrackLayout {
  processes: ProcessTrack[]
  /** By spanKey(traceId, spanId). */
  placements: Map<string, Placement>
}

interface Range {
  start: bigint
  end: bigint
}

export function layoutTracks(spans: readonly SpanRecord[], index: SpanIndex): TrackLayout {
  const groups = groupByProcess(spans)
  const identities = [...groups.values()].map((g) => g.identity).sort(compareProcesses)
  const pids = assignPids(identities)
  const hosts = new Set(identities.map((i) => i.host ?? ''))
  const placements = new Map<string, Placement>()
  const processes: ProcessTrack[] = []
  for (const identity of identities) {
    const group = groups.get(identity.key)!
    const pid = pids.get(identity.key)!
    const laneCount = new ProcessLayout(pid, group.spans, index, placements).run()
    const name = hosts.size > 1 && identity.host !== undefined ? `${identity.label} [${identity.host}]` : identity.label
    processes.push({ pid, identity, name, laneCount })
  }
  return { processes, placements }
}

function groupByProcess(spans: readonly SpanRecord[]): Map<string, { identity: ProcessIdentity; spans: SpanRecord[] }> {
  const groups = new Map<string, { identity: ProcessIdentity; spans: SpanRecord[] }>()
  for (const s of spans) {
    const identity = processIdentityOf(s.resource)
    let g = groups.get(identity.key)
    if (g === undefined) groups.set(identity.key, (g = { identity, spans: [] }))
    g.spans.push(s)
  }
  return groups
}

/** Real pids read best in the UI; numbered tracks only when pids are missing or repeat across hosts. */
function assignPids(identities: readonly ProcessIdentity[]): Map<string, number> {
  const real = identities.map((i) => i.osPid)
  const usable = real.every((p) => p !== undefined && Number.isInteger(p)) && new Set(real).size === real.length
  return new Map(identities.map((id, i) => [id.key, usable ? id.osPid! : i + 1]))
}

class ProcessLayout {
  private readonly inProcess: Set<string>
  private readonly widened = new Map<string, Range>()
  /** Per lane, the outermost ranges placed on it, disjoint and sorted by start. */
  private readonly lanes: Range[][] = []

  constructor(
    private readonly pid: number,
    private readonly spans: readonly SpanRecord[],
    private readonly index: SpanIndex,
    private readonly placements: Map<string, Placement>,
  ) {
    this.inProcess = new Set(spans.map((s) => spanKey(s.traceId, s.spanId)))
  }

  /** Places every span of the process; returns the number of lanes used. */
  run(): number {
    const roots = this.spans.filter((s) => !this.isLocal(this.index.parentOf(s)))
    const ranged = roots.map((s) => ({ span: s, range: this.widen(s) }))
    ranged.sort((a, b) => compareRanged(a.span, a.range, b.span, b.range))
    for (const { span, range } of ranged) this.placeOnFreeLane(span, range)
    return this.lanes.length
  }

  private isLocal(span: SpanRecord | undefined): span is SpanRecord {
    return span !== undefined && this.inProcess.has(spanKey(span.traceId, span.spanId))
  }

  private localChildren(span: SpanRecord): SpanRecord[] {
    return this.index.childrenOf(span).filter((c) => this.isLocal(c))
  }

  /** The span's range, widened to cover its children in this process (computed once). */
  private widen(span: SpanRecord): Range {
    const key = spanKey(span.traceId, span.spanId)
    const known = this.widened.get(key)
    if (known !== undefined) return known
    const r = { start: span.startNs, end: span.endNs }
    for (const c of this.localChildren(span)) {
      const cr = this.widen(c)
      if (cr.start < r.start) r.start = cr.start
      if (cr.end > r.end) r.end = cr.end
    }
    this.widened.set(key, r)
    return r
  }

  private placeOnFreeLane(span: SpanRecord, range: Range): void {
    let lane = this.lanes.findIndex((occupied) => !overlapsAny(occupied, range))
    if (lane < 0) lane = this.lanes.push([]) - 1
    insertSorted(this.lanes[lane]!, range)
    const adjusted = range.start !== span.startNs || range.end !== span.endNs ? 'widened to cover children' : undefined
    this.place(span, range, lane, 0, adjusted)
  }

  private place(span: SpanRecord, range: Range, lane: number, depth: number, adjusted: Placement['adjusted']): void {
    this.placements.set(spanKey(span.traceId, span.spanId), {
      pid: this.pid,
      tid: lane + 1,
      startNs: range.start,
      endNs: range.end,
      ...(adjusted !== undefined ? { adjusted } : {}),
      depth,
    })
    const { kept, moved } = this.splitChildren(span, range)
    let cursor = range.start // end of the last child kept on this lane
    for (const child of kept) {
      let why: Placement['adjusted'] = child.clamped ? 'clamped into parent' : child.widened ? 'widened to cover children' : undefined
      let start = child.start
      if (start < cursor) {
        start = cursor // a millisecond-clock artefact (see overlapIsArtefact)
        why = 'start moved to previous sibling end'
      }
      const end = child.end < start ? start : child.end
      this.place(child.span, { start, end }, lane, depth + 1, why)
      cursor = end
    }
    for (const child of moved) this.placeOnFreeLane(child.span, this.widen(child.span))
  }

  /**
   * Chooses which children stay on the parent's lane: siblings there must follow one another.
   * Of two that truly overlap, the one with more descendants stays (llm_request rather than
   * @fastify/otel's handler span), the other moves to a lane of its own.
   */
  private splitChildren(span: SpanRecord, range: Range): { kept: Child[]; moved: Child[] } {
    const children = this.localChildren(span).map((c): Child => {
      const w = this.widen(c)
      const start = max(w.start, range.start)
      const end = min(w.end, range.end)
      return {
        span: c,
        start,
        end: end < start ? start : end,
        clamped: start !== w.start || end !== w.end,
        widened: w.start !== c.startNs || w.end !== c.endNs,
        weight: this.descendantCount(c),
      }
    })
    children.sort((a, b) => compareRanged(a.span, a, b.span, b))
    const kept: Child[] = []
    const moved: Child[] = []
    for (const child of children) {
      let stays = true
      while (kept.length > 0) {
        const last = kept[kept.length - 1]!
        if (child.start >= last.end || overlapIsArtefact(last, child)) break
        if (child.weight > last.weight) {
          moved.push(kept.pop()!)
          continue
        }
        stays = false
        break
      }
      ;(stays ? kept : moved).push(child)
    }
    return { kept, moved }
  }

  private descendantCount(span: SpanRecord): number {
    let n = 0
    for (const c of this.localChildren(span)) n += 1 + this.descendantCount(c)
    return n
  }
}

interface Child extends Range {
  span: SpanRecord
  clamped: boolean
  widened: boolean
  weight: number
}

/**
 * An overlap the SDK's millisecond start clock made, not concurrency: the later span's start is
 * a whole millisecond, it overlaps by less than one, and it ends after the earlier one ends.
 */
function overlapIsArtefact(earlier: Child, later: Child): boolean {
  return later.span.startNs % START_RESOLUTION_NS === 0n && earlier.end - later.start < START_RESOLUTION_NS && later.end >= earlier.end
}

function compareRanged(a: SpanRecord, ar: Range, b: SpanRecord, br: Range): number {
  if (ar.start !== br.start) return ar.start < br.start ? -1 : 1
  if (ar.end !== br.end) return ar.end > br.end ? -1 : 1
  if (a.traceId !== b.traceId) return a.traceId < b.traceId ? -1 : 1
  return a.spanId < b.spanId ? -1 : a.spanId > b.spanId ? 1 : 0
}

/** Ranges in a lane are disjoint and sorted, so only the neighbours of the insertion point matter. */
function overlapsAny(sorted: readonly Range[], r: Range): boolean {
  const i = lowerBound(sorted, r.start)
  if (i > 0 && sorted[i - 1]!.end > r.start) return true
  if (i < sorted.length && sorted[i]!.start < r.end) return true
  // A zero-length range sitting exactly on another's start still shares that instant.
  if (i < sorted.length && r.start === r.end && sorted[i]!.start === r.start && sorted[i]!.end > r.start) return true
  return false
}

function insertSorted(sorted: Range[], r: Range): void {
  sorted.splice(lowerBound(sorted, r.start), 0, r)
}

function lowerBound(sorted: readonly Range[], start: bigint): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid]!.start < start) lo = mid + 1
    else hi = mid
  }
  return lo
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b
}
