// The first thing a new user sees: greedy continuations of English prompts read as English.

import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { Tokenizer } from '@huggingface/tokenizers'
import { CORPUS_PATH, ensureModel } from '../../src/model/build.ts'
import { readModelInfo } from '../../src/model/load.ts'
import { greedy } from './ort-helpers.ts'

t.test('greedy continuations are mostly corpus words and not one repeated token', async (t) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'spanserve-model-'))
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }))
  const lines: string[] = []
  const dir = await ensureModel({ preset: 'default', cacheDir, log: (l) => lines.push(l) })
  t.match(lines[0], /^building default model \(2 layers, [\d.]+M params\) into /)
  t.match(lines[1], /^built in [\d.]+ s$/)

  const info = readModelInfo(dir)
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')))
  const session = await ort.InferenceSession.create(info.onnxPath)
  const corpusWords = new Set(readFileSync(CORPUS_PATH, 'utf8').split(/\s+/))

  for (const prompt of ['Once upon a time', 'The little girl', 'In the morning']) {
    const ids = await greedy(session, info, tokenizer.encode(prompt).ids, 40)
    const text: string = tokenizer.decode(ids)
    t.comment(`${JSON.stringify(prompt)} → ${JSON.stringify(text)}`)
    const words = text.split(/\s+/).filter((w) => w.length > 0)
    const known = words.filter((w) => corpusWords.has(w)).length
    t.ok(known >= 0.8 * words.length, `${known}/${words.length} words of the ${JSON.stringify(prompt)} continuation are corpus words`)
    t.ok(new Set(ids).size >= 10, `${new Set(ids).size} distinct tokens in 40`)
  }
})
