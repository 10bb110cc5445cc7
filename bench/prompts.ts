/**
 * The benchmark's prompts: token-id arrays of exactly the requested length, cut from the model's own
 * training corpus so the continuations are ordinary text. Token ids (not text) go over the wire, so
 * every configuration sees the same prompt length whatever its tokenizer would do with whitespace.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { CORPUS_PATH } from '../src/model/build.ts'

export interface PromptSet {
  prompts: number[][]
  tokenizer: Tokenizer
}

export function loadTokenizer(modelDir: string): Tokenizer {
  const tokJson = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as object
  const tokConfig = JSON.parse(readFileSync(join(modelDir, 'tokenizer_config.json'), 'utf8')) as object
  return new Tokenizer(tokJson, tokConfig)
}

/** `count` distinct prompts of `length` tokens each, evenly spaced through the corpus. */
export function makePrompts(modelDir: string, length: number, count: number): PromptSet {
  const tokenizer = loadTokenizer(modelDir)
  const corpus = readFileSync(CORPUS_PATH, 'utf8').replaceAll('<|endoftext|>', '\n')
  const ids = tokenizer.encode(corpus, { add_special_tokens: false }).ids
  if (ids.length < length + count) throw new Error(`the corpus has ${ids.length} tokens, too few for ${count} prompts of ${length}`)
  const stride = Math.floor((ids.length - length) / count)
  const prompts = Array.from({ length: count }, (_, i) => ids.slice(i * stride, i * stride + length))
  return { prompts, tokenizer }
}
