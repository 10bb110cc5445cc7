/**
 * Keys read from files (--api-key-file, --admin-api-key-file): a key given as a flag is echoed by
 * `npm start` into the log and shown by `ps` to every user of the machine; a file keeps it off every
 * command line. The file's content is the key, without its trailing line break. A file that cannot
 * be read, or holds no key, stops the start; messages name the flag and the path, never the key.
 */
import { readFileSync } from 'node:fs'
import { ConfigError } from './config-error.ts'

/** A key option and the option naming its file. */
export interface KeyFilePair {
  /** Config key of the key itself (apiKey). */
  key: string
  /** Config key of its file (apiKeyFile). */
  file: string
  keyFlag: string
  fileFlag: string
}

/** Where a value came from: a flag wins over an environment variable, which wins over the default. */
export type Source = 'flag' | 'env' | 'default'

const RANK: Record<Source, number> = { default: 0, env: 1, flag: 2 }

/** The key in the file at `path`; a ConfigError naming `flag` when there is none to be had. */
function readKeyFile(path: string, flag: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  // Editors and `echo KEY > file` end the file with a line break, which is not part of the key.
  const key = text.replace(/\r?\n$/, '')
  if (key.trim() === '') throw new ConfigError(`${flag}: ${path} is empty; it must hold the key`)
  // A key with a line break inside could never be sent in an Authorization header.
  if (/[\r\n]/.test(key)) throw new ConfigError(`${flag}: ${path} holds more than one line; it must hold the key alone`)
  return key
}

/**
 * Sets each key from its file where the file was given with more precedence than the key itself;
 * a key and its file given at the same level (both flags, or both variables) are ambiguous.
 */
export function applyKeyFiles(cfg: Record<string, unknown>, pairs: readonly KeyFilePair[], source: (configKey: string) => Source): void {
  for (const p of pairs) {
    const path = cfg[p.file] as string
    if (path === '') continue
    const fileRank = RANK[source(p.file)]
    const keyRank = RANK[source(p.key)]
    if (keyRank === fileRank) throw new ConfigError(`${p.keyFlag} and ${p.fileFlag} are both set; give one (the file keeps the key off the command line)`)
    if (fileRank > keyRank) cfg[p.key] = readKeyFile(path, p.fileFlag)
  }
}
