/**
 * The worker's KV cache in host memory, in blocks (src/model/kv-blocks.ts): a KvBlockStore holds each
 * block's keys and values under the id the scheduler gave it, and a SequenceKv is one sequence's view
 * through its block table. A sequence may start on blocks another one filled (a cached prefix): they
 * are read, never written, since a sequence only writes at and after its own start.
 */
import { KV_BLOCK_TOKENS as BT } from '../model/kv-blocks.ts'

export interface KvShape {
  numLayers: number
  numKvHeads: number
  headDim: number
}

/** A block's data: [layer*2 + (0 key | 1 value)][heads][KV_BLOCK_TOKENS][headDim], in one array. */
export class KvBlockStore {
  private readonly blocks = new Map<number, Float32Array>()
  private readonly blockFloats: number

  constructor(readonly shape: KvShape) {
    this.blockFloats = shape.numLayers * 2 * shape.numKvHeads * BT * shape.headDim
  }

  get size(): number {
    return this.blocks.size
  }

  has(id: number): boolean {
    return this.blocks.has(id)
  }

  /** The block's data, allocated on first write. */
  data(id: number): Float32Array {
    let b = this.blocks.get(id)
    if (b === undefined) {
      b = new Float32Array(this.blockFloats)
      this.blocks.set(id, b)
    }
    return b
  }

  /** The scheduler freed these blocks: their data goes (a reused id starts empty). */
  free(ids: Iterable<number>): void {
    for (const id of ids) this.blocks.delete(id)
  }

  clear(): void {
    this.blocks.clear()
  }
}

export class SequenceKv {
  /** Tokens stored. */
  length: number

  /**
   * `table`: the sequence's blocks in order, the scheduler's (enough for every position the sequence
   * will write) or its own, grown by `extend` as it fills them; `start`: the positions already held
   * in them (a cached prefix).
   */
  constructor(
    private readonly store: KvBlockStore,
    readonly table: number[],
    start = 0,
    private readonly extend?: () => number,
  ) {
    this.length = start
  }

  /** Blocks holding the first `length` positions: all present unless the worker lost them. */
  static holds(store: KvBlockStore, table: ArrayLike<number>, length: number): boolean {
    const n = Math.ceil(length / BT)
    if (n > table.length) return false
    for (let j = 0; j < n; j++) if (!store.has(table[j]!)) return false
    return true
  }

  private block(j: number): Float32Array {
    while (this.extend && j >= this.table.length) this.table.push(this.extend())
    const id = this.table[j]
    if (id === undefined) throw new RangeError(`KV position ${j * BT} is past the sequence's ${this.table.length} blocks`)
    return this.store.data(id)
  }

  /**
   * Copy this sequence's cache into row `row` of a batch tensor [B, heads, slots, headDim], right-aligned
   * so that its last token sits in the last slot (shorter rows are left-padded).
   */
  writeInto(target: Float32Array, index: number, row: number, slots: number): void {
    const { numKvHeads: H, headDim: D } = this.store.shape
    const pad = slots - this.length
    for (let p = 0, j = 0; p < this.length; p += BT, j++) {
      const src = this.block(j)
      const n = Math.min(BT, this.length - p)
      for (let h = 0; h < H; h++) {
        const from = ((index * H + h) * BT) * D
        target.set(src.subarray(from, from + n * D), ((row * H + h) * slots + pad + p) * D)
      }
    }
  }

  /**
   * Append `count` entries taken from row `row` of a present tensor [B, heads, slots, headDim], from
   * slot `firstSlot` on (stored at positions `length`.. until advance()).
   */
  appendFrom(present: Float32Array, index: number, row: number, slots: number, firstSlot: number, count: number): void {
    const { numKvHeads: H, headDim: D } = this.store.shape
    let done = 0
    while (done < count) {
      const pos = this.length + done
      const j = Math.floor(pos / BT)
      const at = pos - j * BT
      const n = Math.min(BT - at, count - done)
      const dst = this.block(j)
      for (let h = 0; h < H; h++) {
        const from = ((row * H + h) * slots + firstSlot + done) * D
        dst.set(present.subarray(from, from + n * D), ((index * H + h) * BT + at) * D)
      }
      done += n
    }
  }

  /** Called once every layer has been appended for a step. */
  advance(count: number): void {
    this.length += count
  }
}

/**
 * Copy the last `length` tokens of row `fromRow` of a batch tensor [B, heads, fromSlots, headDim] into
 * row `toRow` of another [B', heads, toSlots, headDim], right-aligned in both (left padding).
 */
export function copyBatchRow(shape: KvShape, from: Float32Array, fromRow: number, fromSlots: number, to: Float32Array, toRow: number, toSlots: number, length: number): void {
  const { numKvHeads: H, headDim: D } = shape
  for (let h = 0; h < H; h++) {
    const src = ((fromRow * H + h) * fromSlots + fromSlots - length) * D
    to.set(from.subarray(src, src + length * D), ((toRow * H + h) * toSlots + toSlots - length) * D)
  }
}
