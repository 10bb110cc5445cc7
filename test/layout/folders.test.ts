/**
 * The folders are the architecture: the process folders (server, tokenizer, scheduler, worker, and
 * the router in front of instances) stand on the shared ones and never import one another; nothing
 * shared imports a process folder. A breach is a dependency that a process's own tests would not see.
 */
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { ROOT } from '../../harness/server.ts'

const SRC = join(ROOT, 'src')
const PROCESS_FOLDERS = new Set(['server', 'tokenizer', 'scheduler', 'worker', 'router'])

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return sources(path)
    return /\.(ts|mts|mjs|js)$/.test(e.name) ? [path] : []
  })
}

/** The top folder under src/ of a path in it ('' for a file directly in src/). */
function topFolder(path: string): string {
  const parts = relative(SRC, path).split('/')
  return parts.length > 1 ? parts[0]! : ''
}

t.test('no process folder imports another, and nothing shared imports one', async (t) => {
  const files = sources(SRC)
  t.ok(files.length > 100, 'the sources were found')
  const breaches: string[] = []
  let imports = 0
  for (const file of files) {
    const from = topFolder(file)
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      imports++
      const to = topFolder(resolve(dirname(file), m[1]!))
      if (to === from || !PROCESS_FOLDERS.has(to)) continue
      breaches.push(`${relative(ROOT, file)} imports ${m[1]}`)
    }
  }
  t.ok(imports > 500, `the imports were read (${imports})`)
  t.same(breaches, [])
})
