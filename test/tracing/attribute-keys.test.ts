/**
 * Attribute keys live in src/tracing/attributes.ts only: a key spelled elsewhere in src/ could drift
 * from the declared one (and from the generated docs) without a type error.
 */
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ATTRIBUTE_DOCS } from '../../src/tracing/attributes.ts'
import { ROOT } from '../../harness/server.ts'

/** Strings that equal a key but are no span attribute. */
const NOT_ATTRIBUTES: Record<string, readonly string[]> = {
  // The ONNX model metadata of a tensor-parallel shard.
  'src/model/tp/shard.ts': ['spanserve.tp_rank'],
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return sources(path)
    return /\.(ts|mts|mjs|js)$/.test(e.name) ? [path] : []
  })
}

t.test('no attribute key is spelled outside src/tracing/attributes.ts', async (t) => {
  const files = sources(join(ROOT, 'src')).map((p) => relative(ROOT, p))
  t.ok(files.length > 50, 'the sources were found')
  const found: string[] = []
  for (const file of files) {
    if (file === 'src/tracing/attributes.ts') continue
    const text = readFileSync(join(ROOT, file), 'utf8')
    for (const { key } of ATTRIBUTE_DOCS) {
      if (NOT_ATTRIBUTES[file]?.includes(key)) continue
      if (["'", '"', '`'].some((q) => text.includes(q + key + q))) found.push(`${file}: ${key}`)
    }
  }
  t.same(found, [])
})
