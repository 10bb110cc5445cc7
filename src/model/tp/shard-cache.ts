// Writes every rank's segment files of a model directory once, so that each worker process loads
// only its own shard: <modelDir>/tp<T>-<key>/rank<r>/{embed,attn_l,mlp_l,head}.onnx + manifest.json.
// The key hashes the source model.onnx and this folder's code, so a changed model or sharder never
// reuses stale shards; the directory appears by one atomic rename of a finished build.

import { createHash, randomUUID } from 'node:crypto'
import { constants, createReadStream, existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defaultCacheDir } from '../build.ts'
import { readModelInfo } from '../load.ts'
import type { LlamaSpec } from '../spec.ts'
import { loadLlamaWeights, readLlamaSpec } from './load-weights.ts'
import { SHARD_FORMAT, shardModel, type ShardManifest } from './shard.ts'
import { checkTpSize } from './shard-plan.ts'
import { TpModelFormatError } from './errors.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
export const MANIFEST_FILE = 'manifest.json'

export interface ShardSet {
  /** The directory holding rank0 … rank<T-1>. */
  readonly dir: string
  readonly tpSize: number
  readonly spec: LlamaSpec
  /** Directory of one rank's segment files and manifest. */
  rankDir(rank: number): string
}

export interface EnsureShardsOptions {
  /** Where shards go when the model directory is read-only; default $SPANSERVE_CACHE_DIR or ~/.cache/spanserve/models. */
  readonly cacheDir?: string
  readonly log?: (line: string) => void
}

/** sha256 of the file, streamed so a large model is never held whole in memory. */
async function fileHash(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

async function shardKey(onnxPath: string): Promise<string> {
  const h = createHash('sha256')
  h.update(`spanserve-shards ${SHARD_FORMAT}\n${await fileHash(onnxPath)}\n`)
  // The sharder's own sources and the graph builder it reuses shape the files too.
  for (const name of readdirSync(HERE)
    .filter((f) => f.endsWith('.ts'))
    .sort())
    h.update(`${name}\n`).update(readFileSync(join(HERE, name)))
  h.update(readFileSync(join(HERE, '..', 'onnx-graph.ts')))
  h.update(readFileSync(join(HERE, '..', 'graph-blocks.ts')))
  h.update(readFileSync(join(HERE, '..', 'graph-builder.ts')))
  return h.digest('hex').slice(0, 16)
}

function makeSet(dir: string, tpSize: number, spec: LlamaSpec): ShardSet {
  return { dir, tpSize, spec, rankDir: (rank) => join(dir, `rank${rank}`) }
}

async function writable(dir: string): Promise<boolean> {
  try {
    await fs.access(dir, constants.W_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The shards of `modelDir` (a spanserve-format model) for a group of `tpSize`, built first if
 * missing. Throws TpConfigError when tpSize does not divide the heads, TpModelFormatError for a
 * graph spanserve did not build. Safe to call from several processes at once.
 */
export async function ensureShards(modelDir: string, tpSize: number, opts: EnsureShardsOptions = {}): Promise<ShardSet> {
  const spec = readLlamaSpec(modelDir)
  checkTpSize(spec, tpSize) // before reading any weights: the common mistake fails fast
  const onnxPath = readModelInfo(modelDir).onnxPath
  if (onnxPath === '') throw new TpModelFormatError(`tensor parallelism (--tp-size > 1) cuts its shards from a spanserve-format ONNX file; ${modelDir} holds only a checkpoint (safetensors)`)
  const key = await shardKey(onnxPath)
  const name = `tp${tpSize}-${key}`
  const parent = (await writable(modelDir)) ? modelDir : join(opts.cacheDir ?? defaultCacheDir(), 'shards')
  const dir = join(parent, name)
  if (existsSync(join(dir, `rank${tpSize - 1}`, MANIFEST_FILE))) return makeSet(dir, tpSize, spec)

  const started = performance.now()
  opts.log?.(`sharding ${onnxPath} for tensor parallelism ${tpSize} into ${dir}`)
  const weights = loadLlamaWeights(onnxPath, spec)
  await fs.mkdir(parent, { recursive: true })
  const tmp = `${dir}.tmp-${process.pid}-${randomUUID()}`
  try {
    for (let rank = 0; rank < tpSize; rank++) {
      const { manifest, files } = shardModel(spec, weights, tpSize, rank)
      const rankDir = join(tmp, `rank${rank}`)
      await fs.mkdir(rankDir, { recursive: true })
      for (const [file, bytes] of files) await fs.writeFile(join(rankDir, file), bytes)
      await fs.writeFile(join(rankDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`)
    }
    await fs.rename(tmp, dir)
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true })
    const code = (err as NodeJS.ErrnoException).code
    // Another process finished the same shards first: its copy is identical, use it.
    if ((code === 'EEXIST' || code === 'ENOTEMPTY') && existsSync(join(dir, `rank${tpSize - 1}`, MANIFEST_FILE))) return makeSet(dir, tpSize, spec)
    throw err
  }
  opts.log?.(`sharded in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return makeSet(dir, tpSize, spec)
}

export function readManifest(rankDir: string): ShardManifest {
  const manifest = JSON.parse(readFileSync(join(rankDir, MANIFEST_FILE), 'utf8')) as ShardManifest
  if (manifest.format !== SHARD_FORMAT) throw new Error(`${rankDir}: shard format ${manifest.format}, this build reads ${SHARD_FORMAT}`)
  return manifest
}
