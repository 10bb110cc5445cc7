/**
 * The child processes a configuration calls for, each with its launch spec and the node it runs
 * on: the same table on every node, so node agents and the server agree on who runs where.
 */
import type { Config } from '../../config/schema.ts'
import { workerNode, type Endpoints } from '../../ipc/endpoints.ts'
import type { ModelInfo } from '../../model/load.ts'
import type { LaunchSpec } from '../../process/child.ts'

export interface ChildPlan {
  key: string
  /** Data-parallel group, or null for the tokenizer. */
  group: number | null
  node: number
  spec: LaunchSpec
  /** The child's inbox. */
  inbox: string
}

export function planChildren(config: Config, endpoints: Endpoints, model: ModelInfo, contextLength: number): ChildPlan[] {
  // Children never need the keys (nor where they are kept): keep them out of their environment.
  const base = { config: { ...config, apiKey: '', adminApiKey: '', apiKeyFile: '', adminApiKeyFile: '' }, endpoints, model, contextLength }
  const layout = { dpSize: config.dpSize, tpSize: config.tpSize, nodeHosts: config.nnodes > 1 ? config.nodeHosts : [] }
  const plans: ChildPlan[] = [{ key: 'tokenizer', group: null, node: 0, spec: { ...base, role: 'tokenizer', dpRank: 0, tpRank: 0 }, inbox: endpoints.tokenizer }]
  for (let d = 0; d < config.dpSize; d++) {
    plans.push({ key: `scheduler-${d}`, group: d, node: 0, spec: { ...base, role: 'scheduler', dpRank: d, tpRank: 0 }, inbox: endpoints.schedulers[d]! })
    for (let t = 0; t < config.tpSize; t++) {
      plans.push({ key: `worker-${d}-${t}`, group: d, node: workerNode(layout, d, t), spec: { ...base, role: 'worker', dpRank: d, tpRank: t }, inbox: endpoints.workers[d]![t]! })
    }
  }
  return plans
}

export function childKey(msg: { role: string; dpRank: number; tpRank: number }): string {
  if (msg.role === 'tokenizer') return 'tokenizer'
  if (msg.role === 'scheduler') return `scheduler-${msg.dpRank}`
  return `worker-${msg.dpRank}-${msg.tpRank}`
}
