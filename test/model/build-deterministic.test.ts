// Same inputs, same bytes; the cache builds once and survives concurrent builders.

import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildModel, ensureModel, modelHash } from '../../src/model/build.ts'

function files(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort()
}

t.test('two builds are byte-identical and laid out like Optimum', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'spanserve-det-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const a = await buildModel('default', join(root, 'a'))
  const b = await buildModel('default', join(root, 'b'))
  const names = files(a)
  t.same(names, ['config.json', 'generation_config.json', 'model.onnx', join('onnx', 'model.onnx'), 'spanserve_build.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'])
  t.same(files(b), names)
  for (const name of names) t.ok(readFileSync(join(a, name)).equals(readFileSync(join(b, name))), `${name} identical`)
  t.equal(statSync(join(a, 'model.onnx')).ino, statSync(join(a, 'onnx', 'model.onnx')).ino, 'model.onnx is a hard link')
  t.same(readdirSync(root).sort(), ['a', 'b'], 'no temporary directories left behind')
})

t.test('ensureModel: concurrent calls share one build, later calls hit the cache', async (t) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'spanserve-cache-'))
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }))
  const [x, y] = await Promise.all([ensureModel({ preset: 'default', cacheDir }), ensureModel({ preset: 'default', cacheDir })])
  t.equal(x, y)
  t.equal(x, join(cacheDir, `default-${modelHash('default')}`))
  t.same(readdirSync(cacheDir), [`default-${modelHash('default')}`], 'the losing builder cleaned up')
  const lines: string[] = []
  t.equal(await ensureModel({ preset: 'default', cacheDir, log: (l) => lines.push(l) }), x)
  t.same(lines, [], 'cached: nothing rebuilt')
  t.not(modelHash('default'), modelHash('large'), 'the preset is part of the hash')
})
