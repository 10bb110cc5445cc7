/**
 * Per-sequence KV cache in host memory. Each layer's keys and values are stored [kvHeads, capacity,
 * headDim] and grow by doubling, so appending a step's entries never moves the whole cache.
 */
export interface KvShape {
  numLayers: number
  numKvHeads: number
  headDim: number
}

export class SequenceKv {
  /** Tokens stored. */
  length = 0
  private capacity: number
  /** [layer*2 + (0 key | 1 value)] → [heads, capacity, headDim]. */
  private buffers: Float32Array[]

  constructor(
    private readonly shape: KvShape,
    initialCapacity = 64,
  ) {
    this.capacity = initialCapacity
    this.buffers = Array.from({ length: shape.numLayers * 2 }, () => new Float32Array(shape.numKvHeads * initialCapacity * shape.headDim))
  }

  /** Bytes held, for accounting. */
  get bytes(): number {
    return this.buffers.length * this.shape.numKvHeads * this.capacity * this.shape.headDim * 4
  }

  private reserve(tokens: number): void {
    if (tokens <= this.capacity) return
    let cap = this.capacity
    while (cap < tokens) cap *= 2
    const { numKvHeads: H, headDim: D } = this.shape
    this.buffers = this.buffers.map((old) => {
      const grown = new Float32Array(H * cap * D)
      for (let h = 0; h < H; h++) grown.set(old.subarray(h * this.capacity * D, (h * this.capacity + this.length) * D), h * cap * D)
      return grown
    })
    this.capacity = cap
  }

  /**
   * Copy this sequence's cache into row `row` of a batch tensor [B, heads, slots, headDim], right-aligned
   * so that its last token sits in the last slot (shorter rows are left-padded).
   */
  writeInto(target: Float32Array, index: number, row: number, slots: number): void {
    const { numKvHeads: H, headDim: D } = this.shape
    const src = this.buffers[index]!
    const pad = slots - this.length
    for (let h = 0; h < H; h++) {
      const from = h * this.capacity * D
      target.set(src.subarray(from, from + this.length * D), ((row * H + h) * slots + pad) * D)
    }
  }

  /**
   * Append `count` entries taken from row `row` of a present tensor [B, heads, slots, headDim], from
   * slot `firstSlot` on.
   */
  appendFrom(present: Float32Array, index: number, row: number, slots: number, firstSlot: number, count: number): void {
    this.reserve(this.length + count)
    const { numKvHeads: H, headDim: D } = this.shape
    const dst = this.buffers[index]!
    for (let h = 0; h < H; h++) {
      const from = ((row * H + h) * slots + firstSlot) * D
      dst.set(present.subarray(from, from + count * D), (h * this.capacity + this.length) * D)
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
