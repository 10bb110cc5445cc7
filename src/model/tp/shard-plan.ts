// Which heads, KV heads and MLP units each rank of a tensor-parallel group owns.

import type { LlamaSpec } from '../spec.ts'
import { TpConfigError } from './errors.ts'

/** A contiguous run [start, start + count). */
export interface Range {
  readonly start: number
  readonly count: number
}

export interface ShardPlan {
  readonly rank: number
  readonly tpSize: number
  /** Query heads: column slice of q_proj, row slice of o_proj. */
  readonly heads: Range
  /** KV heads: column slice of k_proj and v_proj, and the rank's share of the KV cache. */
  readonly kvHeads: Range
  /** MLP hidden units: column slice of gate/up, row slice of down. */
  readonly mlp: Range
}

/**
 * Throws TpConfigError when the group cannot split the model evenly: every rank must own whole
 * KV heads with their whole query groups, so heads and KV heads must both divide by tpSize.
 * MLP units need not divide: ranks differ by at most one unit.
 */
export function checkTpSize(spec: LlamaSpec, tpSize: number): void {
  if (!Number.isInteger(tpSize) || tpSize < 1) throw new TpConfigError(`--tp-size must be a positive integer, got ${tpSize}`)
  if (spec.numHeads % tpSize !== 0 || spec.numKvHeads % tpSize !== 0) {
    throw new TpConfigError(
      `--tp-size ${tpSize} does not divide the model: ${spec.numHeads} attention heads and ${spec.numKvHeads} KV heads ` +
        `must both be multiples of the TP size (try ${divisors(gcd(spec.numHeads, spec.numKvHeads)).join(', ')})`,
    )
  }
  if (tpSize > spec.intermediateSize) throw new TpConfigError(`--tp-size ${tpSize} exceeds the MLP width ${spec.intermediateSize}`)
}

export function planShard(spec: LlamaSpec, tpSize: number, rank: number): ShardPlan {
  checkTpSize(spec, tpSize)
  if (!Number.isInteger(rank) || rank < 0 || rank >= tpSize) throw new TpConfigError(`TP rank ${rank} is outside 0..${tpSize - 1}`)
  const even = (n: number): Range => ({ start: (rank * n) / tpSize, count: n / tpSize })
  const m = spec.intermediateSize
  const mlpStart = Math.floor((rank * m) / tpSize)
  return {
    rank,
    tpSize,
    heads: even(spec.numHeads),
    kvHeads: even(spec.numKvHeads),
    mlp: { start: mlpStart, count: Math.floor(((rank + 1) * m) / tpSize) - mlpStart },
  }
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b)
}

function divisors(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1).filter((k) => n % k === 0)
}
