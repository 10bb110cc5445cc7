/**
 * Everything one TP rank of a worker process needs, in one call: the rank's shard files (built by
 * the first caller), its segment sessions, its all-reduce sockets, and the runner over them.
 */
import { ensureShards } from '../../model/tp/shard-cache.ts'
import { ZmqAllReduce } from './collective.ts'
import { TpModelRunner } from './runner.ts'
import { openRankSegments, type SessionFactory } from './segments.ts'

export interface OpenTpRunnerOptions {
  /** A spanserve-format model directory (ModelInfo.dir). */
  modelDir: string
  tpSize: number
  rank: number
  /** All-reduce inbox of every rank of this TP group, by tp rank (distinct from the worker inboxes). */
  addresses: readonly string[]
  /** Opens one segment session; wrap options in segmentSessionOptions(). */
  create: SessionFactory
  /** See ZmqAllReduceOptions.timeoutMs. */
  timeoutMs?: number
  log?: (line: string) => void
}

export interface TpRank {
  runner: TpModelRunner
  /** Closes the sockets and releases the sessions. */
  close(): Promise<void>
}

export async function openTpRunner(opts: OpenTpRunnerOptions): Promise<TpRank> {
  if (opts.addresses.length !== opts.tpSize) throw new Error(`${opts.addresses.length} all-reduce addresses for a TP group of ${opts.tpSize}`)
  const shards = await ensureShards(opts.modelDir, opts.tpSize, { log: opts.log })
  const segments = await openRankSegments(shards.rankDir(opts.rank), opts.create)
  const collective = await ZmqAllReduce.open({ rank: opts.rank, addresses: opts.addresses, timeoutMs: opts.timeoutMs })
  return {
    runner: new TpModelRunner(segments, collective),
    close: async () => {
      collective.close()
      await segments.release()
    },
  }
}
