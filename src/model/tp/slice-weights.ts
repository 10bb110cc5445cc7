// Cuts one rank's share out of a layer's weights: column slices of the projections that fan out
// (q, k, v, gate, up) and row slices of those that fan back in (o, down), so that the rank's partial
// outputs sum, over the group, to the unsharded layer's output.

import type { LayerWeights, LlamaSpec } from '../spec.ts'
import type { Range, ShardPlan } from './shard-plan.ts'

/** Columns [start, start+count) of a row-major [rows, cols] matrix. */
function sliceColumns(w: Float32Array, rows: number, cols: number, r: Range): Float32Array {
  const out = new Float32Array(rows * r.count)
  for (let i = 0; i < rows; i++) out.set(w.subarray(i * cols + r.start, i * cols + r.start + r.count), i * r.count)
  return out
}

/** Rows [start, start+count) of a row-major [rows, cols] matrix. */
function sliceRows(w: Float32Array, cols: number, r: Range): Float32Array {
  return w.slice(r.start * cols, (r.start + r.count) * cols)
}

const scaled = (r: Range, by: number): Range => ({ start: r.start * by, count: r.count * by })

/** The rank's layer: shapes as LayerWeights with heads, kvHeads and intermediate narrowed to the plan. */
export function shardLayer(spec: LlamaSpec, lw: LayerWeights, plan: ShardPlan): LayerWeights {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: m } = spec
  const heads = scaled(plan.heads, hd)
  const kvHeads = scaled(plan.kvHeads, hd)
  return {
    inputNorm: lw.inputNorm,
    q: sliceColumns(lw.q, d, H * hd, heads),
    k: sliceColumns(lw.k, d, KV * hd, kvHeads),
    v: sliceColumns(lw.v, d, KV * hd, kvHeads),
    o: sliceRows(lw.o, d, heads),
    postNorm: lw.postNorm,
    gate: sliceColumns(lw.gate, d, m, plan.mlp),
    up: sliceColumns(lw.up, d, m, plan.mlp),
    down: sliceRows(lw.down, d, plan.mlp),
  }
}
