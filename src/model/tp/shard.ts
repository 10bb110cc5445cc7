// One rank's share of a Llama decoder as segment graphs, with the manifest that tells a runner how
// to chain them: embed → (attn_l, all-reduce, mlp_l, all-reduce) per layer → head (rank 0).

import type { LlamaSpec, LlamaWeights } from '../spec.ts'
import { buildAttentionSegment, buildEmbedSegment, buildHeadSegment, buildMlpSegment } from './segment-graph.ts'
import { planShard, type ShardPlan } from './shard-plan.ts'
import { shardLayer } from './slice-weights.ts'

/** Bump when the segment graphs or the manifest change shape: cached shards are rebuilt. */
export const SHARD_FORMAT = 1

export interface ShardManifest {
  readonly format: number
  readonly spec: LlamaSpec
  readonly plan: ShardPlan
  /** File names, relative to the rank's directory. */
  readonly segments: {
    readonly embed: string
    readonly attn: readonly string[]
    readonly mlp: readonly string[]
    /** null on ranks other than 0: they never compute logits. */
    readonly head: string | null
  }
}

export interface RankShard {
  readonly manifest: ShardManifest
  /** Serialised ONNX models by file name (the names in manifest.segments). */
  readonly files: ReadonlyMap<string, Uint8Array>
}

function segmentFileNames(spec: LlamaSpec, rank: number): ShardManifest['segments'] {
  return {
    embed: 'embed.onnx',
    attn: Array.from({ length: spec.numLayers }, (_, l) => `attn_${l}.onnx`),
    mlp: Array.from({ length: spec.numLayers }, (_, l) => `mlp_${l}.onnx`),
    head: rank === 0 ? 'head.onnx' : null,
  }
}

/** Rank `rank` of `tpSize`: throws TpConfigError when heads or KV heads do not divide. */
export function shardModel(spec: LlamaSpec, weights: LlamaWeights, tpSize: number, rank: number): RankShard {
  const plan = planShard(spec, tpSize, rank)
  const segments = segmentFileNames(spec, rank)
  const meta = { 'spanserve.tp_size': String(tpSize), 'spanserve.tp_rank': String(rank) }
  const files = new Map<string, Uint8Array>()
  files.set(segments.embed, buildEmbedSegment(spec, weights.embed, meta))
  weights.layers.forEach((lw, l) => {
    const shard = shardLayer(spec, lw, plan)
    files.set(segments.attn[l]!, buildAttentionSegment(spec, l, shard, plan.heads.count, plan.kvHeads.count, meta))
    files.set(segments.mlp[l]!, buildMlpSegment(spec, l, shard, plan.mlp.count, meta))
  })
  if (segments.head) files.set(segments.head, buildHeadSegment(spec, weights.finalNorm, weights.lmHead, meta))
  return { manifest: { format: SHARD_FORMAT, spec, plan, segments }, files }
}
