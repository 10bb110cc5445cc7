/**
 * Prefill and decode steps of one tensor-parallel rank: the same public interface as
 * ../runner.ts's ModelRunner, so the worker can hold either. The rank runs its segment sessions
 * (embed, then per layer attention and MLP over its heads and MLP units, then the LM head on rank 0)
 * and adds the group's all-reduced partials to the residual stream between them. Every rank of a
 * group must make the same calls in the same order (lockstep): each call's all-reduces are tagged
 * with a per-runner call counter.
 *
 * What keeps a group in lockstep: every rank receives the same ForwardBatch and runs it the same way
 * (../step.ts: releases, then the prefill chunks in order, then the decodes), and skips the same
 * unknown rids because every rank holds the same sequences. Only rank 0 samples: the other ranks
 * return -1s and no logits, and the scheduler takes rank 0's forward_out once every rank has
 * answered (one step in flight under TP). A restarted rank would count its calls from 0 again, so
 * the launcher restarts the whole group when one rank dies.
 *
 * The shards come from src/model/tp (shard-plan.ts: which heads, KV heads and MLP units a rank owns;
 * shard-cache.ts: each rank's segment files, cut once at start-up); ./open.ts wires this runner to its
 * segment sessions (./segments.ts) and all-reduce sockets (./collective.ts).
 */
import * as ort from 'onnxruntime-node'
import type { PrefillEntry } from '../../ipc/messages.ts'
import { SEGMENT_IO as IO } from '../../model/tp/segment-graph.ts'
import type { LlamaSpec } from '../../model/spec.ts'
import type { SequenceKv } from '../kv-cache.ts'
import { HeldSequences } from '../batch-runner.ts'
import { RunnerError, type StepResult } from '../runner.ts'
import { Sampler } from '../sampler.ts'
import { logprobsRecorder, type LogprobsRecorder } from '../logprobs.ts'
import type { StepRunner } from '../step-runner.ts'
import type { AllReduce } from './collective.ts'
import type { RankSegments } from './segments.ts'

interface Sequence {
  /** This rank's KV heads only, in this rank's blocks (every rank holds the same block ids). */
  kv: SequenceKv
  /** Its blocks are its own (no table from the scheduler): freed with it. */
  ownBlocks: boolean
  /** Rank 0 only: the other ranks never sample. */
  sampler: Sampler | null
  /** Rank 0, only when the request asks for logprobs. */
  logprobs: LogprobsRecorder | null
  /** Rank 0: the last sampled token. */
  lastToken: number
  /** The prompt's last chunk has run: the sequence may decode. */
  prefilled: boolean
}

export interface TpStepResult extends StepResult {
  /** Milliseconds this call spent in all-reduce (transfer plus waiting for the slowest rank). */
  allReduceMs: number
  /** All-reduces in this call (2 per layer). */
  allReduces: number
}

export class TpModelRunner extends HeldSequences<Sequence> implements StepRunner {
  private readonly spec: LlamaSpec
  /** Tags this call's all-reduces; equal on every rank while they stay in lockstep. */
  private call = 0
  readonly rank: number
  readonly tpSize: number
  readonly usesPositionIds = true

  constructor(
    readonly segments: RankSegments,
    readonly collective: AllReduce,
  ) {
    const { spec, plan } = segments.manifest
    super({ numLayers: spec.numLayers, numKvHeads: plan.kvHeads.count, headDim: spec.headDim })
    if (collective.rank !== plan.rank || collective.size !== plan.tpSize) {
      throw new RunnerError(`shard is rank ${plan.rank} of ${plan.tpSize}, the all-reduce is rank ${collective.rank} of ${collective.size}`)
    }
    this.spec = spec
    this.rank = plan.rank
    this.tpSize = plan.tpSize
  }

  release(rid: string): void {
    const seq = this.seqs.get(rid)
    if (!seq) return
    this.seqs.delete(rid)
    this.blocks.close(seq.kv, seq.ownBlocks)
  }

  trim(): void {
    this.blocks.store.trim()
  }

  clear(): void {
    this.seqs.clear()
    this.blocks.store.clear()
  }

  /** Tokens held in KV cache, over all sequences (each rank holds its KV heads of all of them). */
  cachedTokens(): number {
    let n = 0
    for (const s of this.seqs.values()) n += s.kv.length
    return n
  }

  private past(rows: readonly Sequence[], index: number, slots: number): ort.Tensor {
    const { numKvHeads: H, headDim: D } = this.shape
    const data = new Float32Array(rows.length * H * slots * D)
    for (let r = 0; r < rows.length; r++) rows[r]!.kv.writeInto(data, index, r, slots)
    return new ort.Tensor('float32', data, [rows.length, H, slots, D])
  }

  /**
   * The residual stream [B,S,d] after every layer, for S new tokens per row after `slots` cached
   * (left-padded) slots; appends the rows' new keys and values to their caches.
   */
  private async layers(
    rows: readonly Sequence[],
    ids: BigInt64Array,
    S: number,
    mask: BigInt64Array,
    pos: BigInt64Array,
    slots: number,
  ): Promise<{ hidden: Float32Array; reduceMs: number; reduces: number }> {
    const B = rows.length
    const d = this.spec.hiddenSize
    const call = this.call++
    let seq = 0
    let reduceMs = 0
    const addReduced = async (x: Float32Array, partial: Float32Array): Promise<void> => {
      const t0 = performance.now()
      const sum = await this.collective.allReduce(call, seq++, partial)
      reduceMs += performance.now() - t0
      for (let i = 0; i < x.length; i++) x[i]! += sum[i]!
    }
    const embedded = await this.segments.embed.run({ [IO.inputIds]: new ort.Tensor('int64', ids, [B, S]) })
    const x = embedded[IO.hidden]!.data as Float32Array
    const hidden = new ort.Tensor('float32', x, [B, S, d]) // a view: runs read x as it is updated
    const attentionMask = new ort.Tensor('int64', mask, [B, slots + S])
    const positionIds = new ort.Tensor('int64', pos, [B, S])
    for (let l = 0; l < this.spec.numLayers; l++) {
      const attn = await this.segments.attn[l]!.run({
        [IO.hidden]: hidden,
        [IO.attentionMask]: attentionMask,
        [IO.positionIds]: positionIds,
        [IO.pastKey]: this.past(rows, 2 * l, slots),
        [IO.pastValue]: this.past(rows, 2 * l + 1, slots),
      })
      const presentK = attn[IO.presentKey]!.data as Float32Array
      const presentV = attn[IO.presentValue]!.data as Float32Array
      for (let r = 0; r < B; r++) {
        rows[r]!.kv.appendFrom(presentK, 2 * l, r, slots + S, slots, S)
        rows[r]!.kv.appendFrom(presentV, 2 * l + 1, r, slots + S, slots, S)
      }
      await addReduced(x, attn[IO.partial]!.data as Float32Array)
      const mlp = await this.segments.mlp[l]!.run({ [IO.hidden]: hidden })
      await addReduced(x, mlp[IO.partial]!.data as Float32Array)
    }
    // Only now: a step that failed half-way leaves every cache as it was.
    for (const row of rows) row.kv.advance(S)
    return { hidden: x, reduceMs, reduces: seq }
  }

  /** Rank 0: logits [B, vocab] of the rows' last hidden states [B, d]. */
  private async logits(last: Float32Array, B: number): Promise<Float32Array> {
    const out = await this.segments.head!.run({ [IO.hidden]: new ort.Tensor('float32', last, [B, 1, this.spec.hiddenSize]) })
    return out[IO.logits]!.data as Float32Array
  }

  /**
   * Run one prompt chunk of one sequence. On rank 0, `token` is the first generated token when the
   * chunk is the prompt's last (else -1) and `logits` are the chunk's last position's; other ranks
   * return token -1 and no logits.
   */
  async prefill(entry: PrefillEntry): Promise<TpStepResult> {
    let seq = this.seqs.get(entry.rid)
    if (!seq) {
      const kv = this.blocks.open(entry)
      seq = {
        kv,
        ownBlocks: !entry.blocks,
        sampler: this.rank === 0 ? new Sampler(entry.sampling!) : null,
        logprobs: this.rank === 0 ? logprobsRecorder(entry.sampling!) : null,
        lastToken: -1,
        prefilled: false,
      }
      this.seqs.set(entry.rid, seq)
    }
    const past = seq.kv.length
    if (past !== entry.start) throw new RunnerError(`sequence ${entry.rid} holds ${past} tokens, chunk starts at ${entry.start}`)
    const n = entry.tokens.length
    const ids = new BigInt64Array(n)
    const pos = new BigInt64Array(n)
    for (let i = 0; i < n; i++) {
      ids[i] = BigInt(entry.tokens[i]!)
      pos[i] = BigInt(past + i)
    }
    const mask = new BigInt64Array(past + n).fill(1n)
    const { hidden, reduceMs, reduces } = await this.layers([seq], ids, n, mask, pos, past)
    if (entry.last) seq.prefilled = true
    const vocab = this.spec.vocabSize
    const at = Int32Array.of(0)
    if (this.rank !== 0) return { tokens: Int32Array.of(-1), logits: new Float32Array(0), vocab, rows: at, allReduceMs: reduceMs, allReduces: reduces }
    const d = this.spec.hiddenSize
    // Prompt logprobs (echo) need every position's row; otherwise only the last one is projected.
    const rows = seq.logprobs?.wantsPrompt ? n : 1
    const all = await this.logits(hidden.subarray((n - rows) * d, n * d), rows)
    const logits = all.subarray((rows - 1) * vocab, rows * vocab)
    seq.logprobs?.promptChunk(all, vocab, entry.tokens, entry.start, entry.last)
    if (entry.last) {
      seq.lastToken = seq.sampler!.sample(logits, 0, vocab)
      seq.logprobs?.token(logits, 0, vocab, seq.lastToken)
    }
    return { tokens: Int32Array.of(entry.last ? seq.lastToken : -1), logits, vocab, rows: at, allReduceMs: reduceMs, allReduces: reduces }
  }

  /**
   * One decode step for all the given sequences together (left-padded to the longest cache). `inputs`
   * are their last tokens: required on ranks other than 0, which never sample; rank 0 defaults to its
   * own last sampled tokens. Rank 0 returns the next tokens and logits [B, vocab]; other ranks -1s.
   */
  async decode(rids: readonly string[], inputs?: Int32Array): Promise<TpStepResult> {
    const rows = rids.map((rid) => {
      const s = this.seqs.get(rid)
      if (!s || !s.prefilled) throw new RunnerError(`decode of sequence ${rid} that has not finished prefill`)
      return s
    })
    if (!inputs && this.rank !== 0) throw new RunnerError(`TP rank ${this.rank} does not sample: decode needs the input tokens`)
    if (inputs && inputs.length !== rows.length) throw new RunnerError(`decode of ${rows.length} sequences with ${inputs.length} input tokens`)
    const B = rows.length
    let slots = 0
    for (const r of rows) slots = Math.max(slots, r.kv.length)
    const ids = new BigInt64Array(B)
    const pos = new BigInt64Array(B)
    const mask = new BigInt64Array(B * (slots + 1))
    for (let r = 0; r < B; r++) {
      const len = rows[r]!.kv.length
      ids[r] = BigInt(inputs ? inputs[r]! : rows[r]!.lastToken)
      pos[r] = BigInt(len)
      mask.fill(1n, r * (slots + 1) + (slots - len), (r + 1) * (slots + 1))
    }
    const { hidden, reduceMs, reduces } = await this.layers(rows, ids, 1, mask, pos, slots)
    const vocab = this.spec.vocabSize
    // Rows are gathered in the caller's order each step.
    const order = Int32Array.from(rows, (_, r) => r)
    if (this.rank !== 0) return { tokens: new Int32Array(B).fill(-1), logits: new Float32Array(0), vocab, rows: order, allReduceMs: reduceMs, allReduces: reduces }
    const logits = await this.logits(hidden, B)
    const next = new Int32Array(B)
    for (let r = 0; r < B; r++) {
      next[r] = rows[r]!.sampler!.sample(logits, r * vocab, vocab)
      rows[r]!.logprobs?.token(logits, r * vocab, vocab, next[r]!)
      rows[r]!.lastToken = next[r]!
    }
    return { tokens: next, logits, vocab, rows: order, allReduceMs: reduceMs, allReduces: reduces }
  }
}
