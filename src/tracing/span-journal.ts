/**
 * A child process's span journal: every span that enters the export queue is also appended, at once
 * and synchronously, to a file in the server's private run directory. A SIGKILL takes the export
 * queue with the process, but not what was written: written bytes are in the kernel's page cache. The
 * server reads the journal of a child that died and exports what the child had not
 * (orphan-spans.ts). A clean shutdown deletes it.
 *
 * The journal mirrors the batch span processor's queue (export-accounting.ts tells it what enters,
 * what is handed to the exporter and when an export is answered). Span i gets sequence number i; the
 * batch processor hands spans to the exporter in that order, so every span below the watermark
 * (the first span not yet handed over, or the first span of the oldest export still unanswered) is
 * done with. Each answered export that moves the watermark appends a watermark record; the reader
 * skips what lies below it.
 *
 * Bounded: the journal is a chain of segment files of about `segmentBytes`; a segment whose spans are
 * all below the watermark is deleted (or, the current one, emptied). Past `maxBytes` in all, spans
 * are not journaled, and counted. The journal never throws into the span's path: a failed write
 * turns it off, with one warning.
 *
 * A second journal per process holds the spans that tail sampling holds for their trace's verdict
 * (tail-buffer.ts; `heldJournalKey`): those never enter the queue until kept, so no watermark moves
 * past them. It has no watermark: its segments go once they have been quiet for `expireMs` (the
 * verdict timeout, after which the hold has let them go too), or, past `maxBytes`, oldest first, and
 * the reader hands every span in it to the server's own hold, where the trace's verdict decides.
 */
import { closeSync, ftruncateSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Attributes } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { ProcessIdentity } from './options.ts'
import { RecordEncoder } from './span-record.ts'

/** The directory of the journals, set by the server for its children (orphan-spans.ts); unset, no journal. */
export const SPAN_JOURNAL_ENV = 'SPANSERVE_SPAN_JOURNAL_DIR'

export interface JournalLimits {
  /** A segment past this size is followed by a new one (or emptied, when all it holds is exported). Default 1 MiB. */
  segmentBytes: number
  /** All segments together; spans past it are not journaled, and counted. Default 32 MiB. */
  maxBytes: number
  /** An export unanswered for this long stops holding the watermark back (the batch processor gave up on it). */
  staleExportMs: number
  /** A held journal: segments quiet this long are deleted, and past maxBytes the oldest go first (no watermark). */
  expireMs?: number
}

/** Where the journal's one warning goes (types.ts's WarnLogger). */
interface WarnLogger {
  warn(obj: object, msg: string): void
}

/** The most bytes of records held before they are written. */
const STAGE_BYTES = 64 * 1024

const DEFAULT_LIMITS: JournalLimits = { segmentBytes: 1 << 20, maxBytes: 32 << 20, staleExportMs: 30_000 }

/** The process's key, as the launcher names it (server/supervisor/children.ts childKey); the server and router keep none. */
export function journalKey(who: ProcessIdentity): string | undefined {
  if (who.role === 'tokenizer') return 'tokenizer'
  if (who.role === 'scheduler') return `scheduler-${who.dpRank ?? 0}`
  if (who.role === 'worker') return `worker-${who.dpRank ?? 0}-${who.tpRank ?? 0}`
  return undefined
}

const SUFFIX = '.spans'

/** The key of a process's held journal (tail sampling's hold), beside its queue's journal. */
export function heldJournalKey(key: string): string {
  return `${key}-held`
}

function segmentPath(dir: string, key: string, pid: number, index: number): string {
  return join(dir, `${key}.${pid}.${index}${SUFFIX}`)
}

/** The segment files of one process's journal, oldest first. */
export function journalSegments(dir: string, key: string, pid: number): string[] {
  const prefix = `${key}.${pid}.`
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  return names
    .filter((n) => n.startsWith(prefix) && n.endsWith(SUFFIX))
    .map((n) => ({ n, index: Number(n.slice(prefix.length, -SUFFIX.length)) }))
    .filter((s) => Number.isInteger(s.index))
    .sort((a, b) => a.index - b.index)
    .map((s) => join(dir, s.n))
}

interface Segment {
  path: string
  bytes: number
  /** Sequence number of its last span, -1 while it has none. */
  lastSeq: number
  /** Spans in it, and Date.now() of its last (a held journal's expiry). */
  spans: number
  lastAt: number
}

export class SpanJournal {
  private readonly encoder = new RecordEncoder()
  private readonly header: Buffer
  private readonly segments: Segment[] = []
  private fd = -1
  private nextIndex = 0
  private total = 0
  /** Sequence number of the next span. */
  private next = 0
  /** Spans handed to the exporter so far: sequence numbers below it have left the queue. */
  private handedTo = 0
  /** Exports not yet answered: their first sequence number → when they started. */
  private readonly inflight = new Map<number, number>()
  /** The watermark last written. */
  private written = 0
  /** Spans not journaled: over maxBytes, or after a failed write. */
  dropped = 0
  /** Records of the synchronous run in progress, written together at its end (flush). */
  private readonly staged = Buffer.allocUnsafe(STAGE_BYTES)
  private stagedBytes = 0
  private flushQueued = false

  private constructor(
    private readonly dir: string,
    private readonly key: string,
    resource: Attributes,
    private readonly limits: JournalLimits,
    private readonly log: WarnLogger,
  ) {
    this.header = this.encoder.header({ key, pid: process.pid, resource })
  }

  /** Opens this process's journal in `dir`; undefined (and one warning) if the file cannot be created. */
  static open(dir: string, key: string, resource: Attributes, log: WarnLogger, limits: Partial<JournalLimits> = {}): SpanJournal | undefined {
    const journal = new SpanJournal(dir, key, resource, { ...DEFAULT_LIMITS, ...limits }, log)
    return journal.startSegment() ? journal : undefined
  }

  /** A span entered the export queue: its record is in the page cache when this returns. */
  append(span: ReadableSpan): void {
    const seq = this.next++
    if (this.fd < 0) {
      this.dropped++
      return
    }
    let rec: Buffer
    try {
      rec = this.encoder.span(seq, span)
    } catch {
      // An attribute JSON cannot hold (a BigInt from a careless caller): that span only.
      this.dropped++
      return
    }
    let cur = this.segments.at(-1)!
    const opensSegment = cur.bytes + rec.length > this.limits.segmentBytes && cur.lastSeq >= 0
    if (this.limits.expireMs !== undefined && (opensSegment || this.total + rec.length > this.limits.maxBytes)) this.makeRoom(rec.length + this.header.length)
    // A new segment starts with the header again: that counts against the cap too.
    if (this.total + rec.length + (opensSegment ? this.header.length : 0) > this.limits.maxBytes) {
      this.dropped++
      return
    }
    if (opensSegment) {
      if (!this.nextSegment()) {
        this.dropped++
        return
      }
      cur = this.segments.at(-1)!
    }
    if (!this.stage(rec)) return
    cur.bytes += rec.length
    cur.lastSeq = seq
    cur.spans++
    if (this.limits.expireMs !== undefined) cur.lastAt = Date.now()
    this.total += rec.length
  }

  /** A held journal's room: the segments quiet for expireMs go, then the oldest while `bytes` more would pass maxBytes (their spans counted). */
  private makeRoom(bytes: number): void {
    const cutoff = Date.now() - this.limits.expireMs!
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!
      const quiet = oldest.lastAt < cutoff
      if (!quiet && this.total + bytes <= this.limits.maxBytes) break
      if (!quiet) this.dropped += oldest.spans
      this.removeSegment(this.segments.shift()!)
    }
  }

  /** The batch processor handed its oldest `n` spans to the exporter; returns the export's first sequence number. */
  handed(n: number): number {
    const first = this.handedTo
    this.handedTo += n
    if (n > 0) this.inflight.set(first, Date.now())
    return first
  }

  /** The export that started at `first` was answered (exported or failed: either way the process is done with it). */
  settled(first: number): void {
    this.inflight.delete(first)
    const mark = this.watermark()
    if (mark <= this.written || this.fd < 0) return
    // Recorded before any segment goes: a kill in between leaves records below it, never loses one above.
    if (!this.writeWatermark(mark)) return
    this.written = mark
    while (this.segments.length > 1 && this.segments[0]!.lastSeq < mark) this.removeSegment(this.segments.shift()!)
  }

  /** Deletes the journal: a clean shutdown, after the last export. */
  close(): void {
    this.stagedBytes = 0
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
    for (const s of this.segments.splice(0)) this.removeSegment(s)
  }

  /** Every span below it was exported, or given up on, by this process. */
  private watermark(): number {
    let mark = this.handedTo
    const now = Date.now()
    for (const [first, since] of this.inflight) {
      if (now - since > this.limits.staleExportMs) this.inflight.delete(first)
      else if (first < mark) mark = first
    }
    return mark
  }

  /** The current segment is full: empty it if all its spans are done, else start the next. */
  private nextSegment(): boolean {
    const mark = this.watermark()
    const cur = this.segments.at(-1)!
    if (!this.flush()) return false
    if (cur.lastSeq < mark && this.segments.length === 1) {
      try {
        ftruncateSync(this.fd, this.header.length)
      } catch (err) {
        return this.fail(err)
      }
      this.total -= cur.bytes - this.header.length
      cur.bytes = this.header.length
      cur.lastSeq = -1
      cur.spans = 0
      return true
    }
    closeSync(this.fd)
    this.fd = -1
    if (!this.startSegment()) return false
    // The new segment knows the watermark too: the older ones may be gone when it is read.
    return this.written === 0 || this.writeWatermark(this.written)
  }

  private startSegment(): boolean {
    const path = segmentPath(this.dir, this.key, process.pid, this.nextIndex++)
    try {
      this.fd = openSync(path, 'a', 0o600)
    } catch (err) {
      return this.fail(err)
    }
    this.segments.push({ path, bytes: 0, lastSeq: -1, spans: 0, lastAt: 0 })
    if (!this.write(this.header)) return false
    this.segments.at(-1)!.bytes = this.header.length
    this.total += this.header.length
    return true
  }

  /** Written at once, with what is staged before it: segments are deleted on its word. */
  private writeWatermark(mark: number): boolean {
    const rec = this.encoder.watermark(mark)
    if (!this.stage(rec) || !this.flush()) return false
    this.segments.at(-1)!.bytes += rec.length
    this.total += rec.length
    return true
  }

  /**
   * Copies a record into the staging buffer; the buffer is written when the synchronous run that
   * ends the spans is over (a batch slice's requests, the tracing thread's replay of a step's calls).
   * One write(2) per run instead of one per span: the system call was 80% of a span's journaling.
   */
  private stage(rec: Buffer): boolean {
    if (this.stagedBytes + rec.length > STAGE_BYTES && !this.flush()) return false
    if (rec.length > STAGE_BYTES) return this.write(rec)
    rec.copy(this.staged, this.stagedBytes)
    this.stagedBytes += rec.length
    if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(this.flushStaged)
    }
    return true
  }

  private readonly flushStaged = (): void => {
    this.flushQueued = false
    this.flush()
  }

  private flush(): boolean {
    if (this.stagedBytes === 0 || this.fd < 0) return true
    const n = this.stagedBytes
    this.stagedBytes = 0
    return this.write(this.staged.subarray(0, n))
  }

  private write(rec: Buffer): boolean {
    try {
      for (let at = 0; at < rec.length; ) at += writeSync(this.fd, rec, at)
      return true
    } catch (err) {
      return this.fail(err)
    }
  }

  private removeSegment(s: Segment): void {
    this.total -= s.bytes
    try {
      unlinkSync(s.path)
    } catch {
      // Already gone: the directory went with a server that stopped.
    }
  }

  /** A journal that cannot be written is given up: the spans still go to the exporter. */
  private fail(err: unknown): false {
    try {
      this.log.warn({ err: (err as Error).message, journal: this.dir }, 'tracing: the span journal failed; spans of this process are lost again if it is killed')
    } catch {
      // A broken logger must not turn into a serving error.
    }
    this.close()
    return false
  }
}
