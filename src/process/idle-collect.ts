/**
 * One full garbage collection once a process has gone idle after work: what a burst left for the
 * collector (a worker's trimmed KV slabs, a tokenizer's huge prompt strings) is freed then, rather
 * than whenever the next allocation happens to start a collection, so resident memory comes back
 * near its level before the burst. V8's gc() is reached through its flag, set at run time. Then
 * glibc is asked to give back the free memory inside its heaps (malloc_trim, through koffi's FFI):
 * freed buffers under its mmap threshold stay in the heap otherwise, and after an n=128 burst a
 * worker stayed at 1.26 GB against 0.27 GB before it. (A fixed, low mmap threshold gives them back
 * too, but cost 10-20% of tokens/s in page faults.)
 */
import { createRequire } from 'node:module'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Idle this long (no live request) after work before the collection. */
const IDLE_MS = 5000

let gc: (() => void) | null = null
/** glibc's malloc_trim, or null where there is none (musl, macOS) or it cannot be loaded. */
let mallocTrim: ((pad: number) => number) | null | undefined

function loadMallocTrim(): ((pad: number) => number) | null {
  if (process.platform !== 'linux') return null
  try {
    const koffi = createRequire(import.meta.url)('koffi') as { load(name: string): { func(decl: string): (pad: number) => number } }
    return koffi.load('libc.so.6').func('int malloc_trim(size_t pad)')
  } catch {
    return null
  }
}

function fullGc(): void {
  if (gc === null) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  gc()
  if (mallocTrim === undefined) mallocTrim = loadMallocTrim()
  mallocTrim?.(0)
}

/** Fed each periodic report's live request count; collects once per idle spell that follows work. */
export function idleCollector(now: () => number = () => performance.now()): (liveRequests: number) => void {
  let busy = false
  let idleSince = 0
  return (liveRequests) => {
    if (liveRequests > 0) {
      busy = true
      idleSince = 0
      return
    }
    if (!busy) return
    if (idleSince === 0) idleSince = now()
    else if (now() - idleSince >= IDLE_MS) {
      busy = false
      fullGc()
    }
  }
}
