/**
 * Which instance serves a request: SGLang's cache_aware policy (sgl-router, policies/cache_aware.rs),
 * on per-instance trees of prompt text.
 *
 * 1. Out of balance: when the busiest instance has more than `balanceAbsThreshold` requests in flight
 *    over the idlest AND more than `balanceRelThreshold` times as many, the least loaded wins.
 * 2. Otherwise the instance whose tree holds the longest prefix of the prompt wins, when that prefix
 *    is more than `cacheThreshold` of the prompt's characters (a cache hit).
 * 3. Otherwise (a miss) the least loaded; among equals, the smallest tree (SGLang picks the smallest
 *    tree alone: with nothing in flight the two agree), then the one picked least recently.
 * The winner's tree records the prompt in every case, as SGLang's does.
 *
 * `round_robin` (SGLang's name), a baseline that ignores cache and load: the healthy instance picked
 * least recently, which is SGLang's counter modulo the healthy instances while the set is stable.
 * Pure: no I/O, no clock; the caller owns the instances and their loads.
 */
import type { RadixTree } from './radix-tree.ts'

/** The routing policies, by SGLang's names. */
export const POLICIES = ['cache_aware', 'round_robin'] as const
export type PolicyName = (typeof POLICIES)[number]

export interface PolicyOptions {
  /** Default cache_aware. */
  policy?: PolicyName
  /** Match rate (matched characters / prompt characters) above which the best match wins; SGLang's default 0.3. */
  cacheThreshold: number
  /** In-flight difference over which, with the relative one, load decides; SGLang's default 64. */
  balanceAbsThreshold: number
  /** In-flight ratio over which, with the absolute one, load decides; SGLang's default 1.5. */
  balanceRelThreshold: number
}

/** What the policy sees of an instance: only healthy ones are offered. */
export interface Candidate {
  /** Requests in flight on it through this router. */
  load: number
  tree: RadixTree
  /** A counter value of when it was last picked (ties go to the least recent). */
  lastPicked: number
}

export type Decision = 'cache_hit' | 'cache_miss' | 'load_balanced' | 'round_robin'

export interface Choice<C extends Candidate> {
  instance: C
  decision: Decision
  /** Matched characters / prompt characters on the chosen instance (0 for an empty prompt). */
  matchRate: number
}

export function isImbalanced(loads: readonly number[], opts: PolicyOptions): boolean {
  if (loads.length < 2) return false
  const max = Math.max(...loads)
  const min = Math.min(...loads)
  return max - min > opts.balanceAbsThreshold && max > min * opts.balanceRelThreshold
}

/** Picks among `candidates` (healthy, at least one) for a prompt of `text`; does not record it. */
export function choose<C extends Candidate>(candidates: readonly C[], text: string, opts: PolicyOptions): Choice<C> {
  if (candidates.length === 0) throw new Error('choose() needs at least one candidate')
  const rate = (c: C) => (text.length === 0 ? 0 : c.tree.match(text) / text.length)
  if (opts.policy === 'round_robin') {
    let instance = candidates[0]!
    for (const c of candidates) if (c.lastPicked < instance.lastPicked) instance = c
    return { instance, decision: 'round_robin', matchRate: rate(instance) }
  }
  if (
    isImbalanced(
      candidates.map((c) => c.load),
      opts,
    )
  ) {
    const instance = leastLoaded(candidates)
    return { instance, decision: 'load_balanced', matchRate: rate(instance) }
  }
  let best = candidates[0]!
  let bestMatch = -1
  if (text.length > 0) {
    for (const c of candidates) {
      const m = c.tree.match(text)
      // Among equal matches, the lighter load, then the least recently picked.
      if (m > bestMatch || (m === bestMatch && (c.load < best.load || (c.load === best.load && c.lastPicked < best.lastPicked)))) {
        best = c
        bestMatch = m
      }
    }
    const matchRate = bestMatch / text.length
    if (matchRate > opts.cacheThreshold) return { instance: best, decision: 'cache_hit', matchRate }
  }
  const instance = leastLoaded(candidates)
  return { instance, decision: 'cache_miss', matchRate: rate(instance) }
}

/** The fewest requests in flight; among equals, the smallest tree, then the one picked least recently. */
export function leastLoaded<C extends Candidate>(candidates: readonly C[]): C {
  let best = candidates[0]!
  for (const c of candidates) {
    if (c.load < best.load) best = c
    else if (c.load === best.load && (c.tree.size < best.tree.size || (c.tree.size === best.tree.size && c.lastPicked < best.lastPicked))) best = c
  }
  return best
}
