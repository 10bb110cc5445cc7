/**
 * One ONNX Runtime session per segment of a rank's shard (see src/model/tp/shard.ts), opened from
 * the rank's directory (what a worker process does) or from in-memory bytes (tests).
 */
import { join } from 'node:path'
import type * as ort from 'onnxruntime-node'
import { readManifest } from '../../model/tp/shard-cache.ts'
import type { RankShard, ShardManifest } from '../../model/tp/shard.ts'
import { cpuOptions } from '../session.ts'

/**
 * Options for segment sessions: `base` (provider, cpuOptions()) over the worker's defaults: ONNX
 * Runtime's intra-op spinning and CPU memory arena off. A pool spins for a while after
 * each run; with one session per segment, the last segment's spinning pool takes the cores the next
 * segment needs (measured on CPU: a tp-1 decode step of the default model went from 9.3 ms to 1.5 ms
 * with spinning off).
 */
export function segmentSessionOptions(base: ort.InferenceSession.SessionOptions = {}): ort.InferenceSession.SessionOptions {
  return { graphOptimizationLevel: 'all', ...cpuOptions({ intraOp: 0, spinning: false, memArena: false }), ...base }
}

/** Opens one segment: e.g. (m) => ort.InferenceSession.create(m, options), or the worker's openSession. */
export type SessionFactory = (model: string | Uint8Array) => Promise<ort.InferenceSession>

export interface RankSegments {
  readonly manifest: ShardManifest
  readonly embed: ort.InferenceSession
  /** By layer. */
  readonly attn: readonly ort.InferenceSession[]
  readonly mlp: readonly ort.InferenceSession[]
  /** Rank 0 only. */
  readonly head: ort.InferenceSession | null
  release(): Promise<void>
}

async function open(manifest: ShardManifest, source: (file: string) => string | Uint8Array, create: SessionFactory): Promise<RankSegments> {
  const s = manifest.segments
  const embed = await create(source(s.embed))
  const attn: ort.InferenceSession[] = []
  const mlp: ort.InferenceSession[] = []
  for (let l = 0; l < s.attn.length; l++) {
    attn.push(await create(source(s.attn[l]!)))
    mlp.push(await create(source(s.mlp[l]!)))
  }
  const head = s.head ? await create(source(s.head)) : null
  const all = [embed, ...attn, ...mlp, ...(head ? [head] : [])]
  return { manifest, embed, attn, mlp, head, release: async () => void (await Promise.all(all.map((x) => x.release()))) }
}

/** The segments in `rankDir` (ShardSet.rankDir(rank) of src/model/tp/shard-cache.ts). */
export function openRankSegments(rankDir: string, create: SessionFactory): Promise<RankSegments> {
  return open(readManifest(rankDir), (file) => join(rankDir, file), create)
}

/** The segments of a shard built in memory (shardModel), without touching the disk. */
export function openRankShard(shard: RankShard, create: SessionFactory): Promise<RankSegments> {
  return open(shard.manifest, (file) => shard.files.get(file)!, create)
}
