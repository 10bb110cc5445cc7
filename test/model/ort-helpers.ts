// Shared by the model tests: feeding an Optimum-layout decoder through ONNX Runtime.

import * as ort from 'onnxruntime-node'

export interface DecoderShape {
  numLayers: number
  numKvHeads: number
  headDim: number
  vocabSize: number
}

export function emptyPast(shape: DecoderShape, batch: number): Record<string, ort.Tensor> {
  const past: Record<string, ort.Tensor> = {}
  for (let i = 0; i < shape.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      past[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [batch, shape.numKvHeads, 0, shape.headDim])
    }
  }
  return past
}

export function presentAsPast(shape: DecoderShape, out: ort.InferenceSession.OnnxValueMapType): Record<string, ort.Tensor> {
  const past: Record<string, ort.Tensor> = {}
  for (let i = 0; i < shape.numLayers; i++) {
    for (const kind of ['key', 'value']) past[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`] as ort.Tensor
  }
  return past
}

export function int64(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values.map((v) => BigInt(v))), dims)
}

/** Greedy decoding of one sequence with the KV cache; returns the new tokens. */
/** Feeds for one unpadded sequence: `chunk` at positions pos.., after `pos` cached tokens. */
export function sequenceFeeds(past: Record<string, ort.Tensor>, chunk: number[], pos: number): Record<string, ort.Tensor> {
  const S = chunk.length
  return {
    ...past,
    input_ids: int64(chunk, [1, S]),
    attention_mask: int64(new Array(pos + S).fill(1), [1, pos + S]),
    position_ids: int64(
      chunk.map((_, i) => pos + i),
      [1, S],
    ),
  }
}

export async function greedy(session: ort.InferenceSession, shape: DecoderShape, prompt: number[], steps: number): Promise<number[]> {
  let past = emptyPast(shape, 1)
  let chunk = prompt
  let pos = 0
  const out: number[] = []
  for (let s = 0; s < steps; s++) {
    const S = chunk.length
    const result = await session.run(sequenceFeeds(past, chunk, pos))
    const logits = result.logits!.data as Float32Array
    const V = shape.vocabSize
    let best = 0
    for (let v = 1; v < V; v++) if (logits[(S - 1) * V + v]! > logits[(S - 1) * V + best]!) best = v
    out.push(best)
    pos += S
    chunk = [best]
    past = presentAsPast(shape, result)
  }
  return out
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}
