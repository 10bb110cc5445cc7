/**
 * The worker's KV cache in host memory, in blocks (src/ipc/kv-blocks.ts): a KvBlockStore holds each
 * block's keys and values under the id the scheduler gave it, and a SequenceKv is one sequence's view
 * through its block table. A sequence may start on blocks another one filled (a cached prefix): they
 * are read, never written, since a sequence only writes at and after its own start.
 */
import { KV_BLOCK_TOKENS as BT } from '../ipc/kv-blocks.ts'

export interface KvShape {
  numLayers: number
  numKvHeads: number
  headDim: number
}

/**
 * Blocks' data, each [layer*2 + (0 key | 1 value)][heads][KV_BLOCK_TOKENS][headDim] at `offset(id)`
 * of `data(id)`. The scheduler's ids (small integers it reuses) live in slabs of SLAB_BLOCKS blocks
 * that are kept once allocated, so a block freed and given out again costs no allocation and no
 * garbage: a block per allocation churned the allocator and the collector, and with the prefix cache
 * holding blocks for a long time, cost a few percent of the worker's time. A sequence's own blocks
 * (negative ids, no table from the scheduler) are allocated one by one.
 */
export class KvBlockStore {
  /** null: a slab given back by trim() (allocated again when one of its blocks is written). */
  private readonly slabs: (Float32Array | null)[] = []
  /** 1 where a block of the scheduler's holds data. */
  private present = new Uint8Array(0)
  private held = 0
  private readonly own = new Map<number, Float32Array>()
  /** Floats of one block's data. */
  readonly blockFloats: number

  constructor(readonly shape: KvShape) {
    this.blockFloats = shape.numLayers * 2 * shape.numKvHeads * BT * shape.headDim
  }

  get size(): number {
    return this.held + this.own.size
  }

  has(id: number): boolean {
    return id < 0 ? this.own.has(id) : this.present[id] === 1
  }

  /** The array holding the block's data (allocated on first write), from `offset(id)`. */
  data(id: number): Float32Array {
    if (id < 0) {
      let b = this.own.get(id)
      if (b === undefined) {
        b = new Float32Array(this.blockFloats)
        this.own.set(id, b)
      }
      return b
    }
    const slab = Math.floor(id / SLAB_BLOCKS)
    while (this.slabs.length <= slab) this.slabs.push(null)
    this.slabs[slab] ??= new Float32Array(SLAB_BLOCKS * this.blockFloats)
    if (id >= this.present.length) {
      const grown = new Uint8Array(Math.max(SLAB_BLOCKS, (slab + 1) * SLAB_BLOCKS, this.present.length * 2))
      grown.set(this.present)
      this.present = grown
    }
    if (this.present[id] === 0) {
      this.present[id] = 1
      this.held++
    }
    return this.slabs[slab]!
  }

  /** Where the block's data starts in `data(id)`. */
  offset(id: number): number {
    return id < 0 ? 0 : (id % SLAB_BLOCKS) * this.blockFloats
  }

  /** Copies of these blocks' data, one after the other (a prompt's KV leaving for a decode instance). */
  copyOut(ids: ArrayLike<number>): Float32Array {
    const n = this.blockFloats
    const out = new Float32Array(ids.length * n)
    for (let j = 0; j < ids.length; j++) {
      const id = ids[j]!
      const at = this.offset(id)
      out.set(this.data(id).subarray(at, at + n), j * n)
    }
    return out
  }

  /** Writes blocks' data as copyOut() gave it: block j of `data` into `ids[j]`, for j from `from` on. */
  copyIn(ids: ArrayLike<number>, data: Float32Array, from: number): void {
    const n = this.blockFloats
    for (let j = from; j < ids.length; j++) {
      const id = ids[j]!
      this.data(id).set(data.subarray(j * n, (j + 1) * n), this.offset(id))
    }
  }

  /** The scheduler freed these blocks: they hold nothing now (an id given out again is written before it is read). */
  free(ids: Iterable<number>): void {
    for (const id of ids) {
      if (id < 0) this.own.delete(id)
      else if (this.present[id] === 1) {
        this.present[id] = 0
        this.held--
      }
    }
  }

  /**
   * Slabs none of whose blocks hold data are let go: after a burst the worker's memory comes back to
   * what the prefix cache and the live sequences hold. Returns the slabs given back.
   */
  trim(): number {
    let freed = 0
    for (let s = 0; s < this.slabs.length; s++) {
      if (this.slabs[s] === null) continue
      const end = Math.min((s + 1) * SLAB_BLOCKS, this.present.length)
      let used = false
      for (let id = s * SLAB_BLOCKS; id < end && !used; id++) used = this.present[id] === 1
      if (used) continue
      this.slabs[s] = null
      freed++
    }
    while (this.slabs.length > 0 && this.slabs[this.slabs.length - 1] === null) this.slabs.pop()
    return freed
  }

  /** Every block goes, and the memory with them (the worker lost its KV). */
  clear(): void {
    this.slabs.length = 0
    this.present = new Uint8Array(0)
    this.held = 0
    this.own.clear()
  }
}

/** Blocks per slab of KvBlockStore (2 MiB on the embedded model). */
const SLAB_BLOCKS = 64

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

  /** The id of the sequence's j-th block (its own blocks grow the table as needed). */
  private blockId(j: number): number {
    while (this.extend && j >= this.table.length) this.table.push(this.extend())
    const id = this.table[j]
    if (id === undefined) throw new RangeError(`KV position ${j * BT} is past the sequence's ${this.table.length} blocks`)
    return id
  }

  /**
   * Copy this sequence's cache into row `row` of a batch tensor [B, heads, slots, headDim], from slot
   * `pad` on: by default right-aligned, its last token in the last slot (left padding); 0 for a
   * right-padded batch (fused-runner.ts).
   */
  writeInto(target: Float32Array, index: number, row: number, slots: number, pad = slots - this.length): void {
    const { numKvHeads: H, headDim: D } = this.store.shape
    for (let p = 0, j = 0; p < this.length; p += BT, j++) {
      const id = this.blockId(j)
      const src = this.store.data(id)
      const base = this.store.offset(id)
      const n = Math.min(BT, this.length - p)
      for (let h = 0; h < H; h++) {
        const from = base + (index * H + h) * BT * D
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
      const id = this.blockId(j)
      const dst = this.store.data(id)
      const base = this.store.offset(id)
      for (let h = 0; h < H; h++) {
        const from = ((row * H + h) * slots + firstSlot + done) * D
        dst.set(present.subarray(from, from + n * D), base + ((index * H + h) * BT + at) * D)
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

/**
 * Copy `count` slots of row `fromRow` of a batch tensor [B, heads, fromSlots, headDim], from slot
 * `fromSlot`, into row `toRow` of another [B', heads, toSlots, headDim] from slot `toSlot`.
 */
export function copyRowSlots(
  shape: KvShape,
  from: Float32Array,
  fromRow: number,
  fromSlots: number,
  fromSlot: number,
  to: Float32Array,
  toRow: number,
  toSlots: number,
  toSlot: number,
  count: number,
): void {
  const { numKvHeads: H, headDim: D } = shape
  for (let h = 0; h < H; h++) {
    const src = ((fromRow * H + h) * fromSlots + fromSlot) * D
    to.set(from.subarray(src, src + count * D), ((toRow * H + h) * toSlots + toSlot) * D)
  }
}
