/**
 * The server's side of the span journals (span-journal.ts): it names the directory its children
 * journal into, and when a child exits, it reads that child's journal, rebuilds the spans the child
 * had not exported, with the child's own resource (its service name, role, ranks and pid), exports
 * them through its own exporter, and deletes the journal.
 *
 * A child that shut down cleanly deleted its journal itself: there is nothing to read. A child killed
 * while an export was on the wire leaves that export's spans above the watermark: they are sent
 * again (a duplicate span id, which backends merge), never lost.
 *
 * With tail sampling, what the child held for its traces' verdicts is in its held journal: those
 * spans join the server's own hold (setup.ts adoptHeldSpans), so a kept trace gets them and a dropped
 * one does not.
 */
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { adoptHeldSpans, exportOrphanSpans } from './setup.ts'
import { heldJournalKey, journalSegments, SPAN_JOURNAL_ENV } from './span-journal.ts'
import { readSegment, rebuildSpans, type JournalHeader, type SegmentContents } from './span-record.ts'

/** Where the children journal: they inherit the variable from the server. */
export interface JournalDir {
  dir: string
  /** Removes a directory made for the journals alone (the ipc run directory is removed with the sockets). */
  remove(): void
}

/**
 * Names `runDir` (the private ipc directory), or a private directory of its own for tcp transport,
 * as the children's journal directory. Call only with tracing on: without the variable no child
 * journals.
 */
export function journalChildren(runDir: string | null): JournalDir {
  // mkdtemp makes it 0700, like the ipc directory: spans can hold prompts.
  const dir = runDir ?? mkdtempSync(join(tmpdir(), 'spanserve-spans-'))
  process.env[SPAN_JOURNAL_ENV] = dir
  return { dir, remove: () => (runDir === null ? rmSync(dir, { recursive: true, force: true }) : undefined) }
}

/** What a dead process's journal held past its watermark, rebuilt as spans. */
export interface OrphanSpans {
  header: JournalHeader | undefined
  spans: ReadableSpan[]
  /** Every span below it had been exported by the process. */
  watermark: number
}

/** Reads the journal of process `key` with `pid` in `dir`: the spans it had not exported. */
export async function readJournal(dir: string, key: string, pid: number): Promise<OrphanSpans & { files: string[] }> {
  const files = journalSegments(dir, key, pid)
  const segments: SegmentContents[] = []
  for (const f of files) segments.push(readSegment(await readFile(f).catch(() => Buffer.alloc(0))))
  const header = segments.find((s) => s.header !== undefined)?.header
  const watermark = Math.max(0, ...segments.map((s) => s.watermark))
  if (header === undefined) return { header, spans: [], watermark, files }
  const tuples = segments.flatMap((s) => s.spans.filter((r) => r.seq >= watermark).map((r) => r.tuple))
  return { header, spans: rebuildSpans(tuples, resourceFromAttributes(header.resource)), watermark, files }
}

/**
 * Exports what the exited process `key` (`pid`) had not, hands what it held for verdicts to this
 * process's hold, and deletes its journals; resolves to the number of spans recovered. Never rejects:
 * a journal that cannot be read costs its spans only.
 */
export function recoverOrphanSpans(dir: string, key: string, pid: number): Promise<number> {
  const read = readJournal(dir, key, pid).catch(() => undefined)
  // Handed over before the files are read, so that a shutdown right after a death waits for them.
  const sent = exportOrphanSpans(read.then((r) => r?.spans ?? []))
  const held = readJournal(dir, heldJournalKey(key), pid).catch(() => undefined)
  return Promise.all([read, held, sent]).then(([r, h]) => {
    const adopted = adoptHeldSpans(h?.spans ?? [])
    for (const f of [...(r?.files ?? []), ...(h?.files ?? [])]) {
      try {
        unlinkSync(f)
      } catch {
        // Gone with the run directory.
      }
    }
    return (r?.spans.length ?? 0) + adopted
  })
}
