/**
 * Model quality on a token sequence, for comparing a graph against its quantized or rewritten
 * self: teacher-forced perplexity and the greedy (argmax) next token at every position, from one
 * session run over the whole sequence of an Optimum-layout decoder with an empty past.
 */
import * as ort from 'onnxruntime-node'

export interface DecoderShape {
  numLayers: number
  numKvHeads: number
  headDim: number
  vocabSize: number
}

export interface TextScore {
  /** Mean negative log-likelihood (nats) of tokens[1..] given their prefixes. */
  nll: number
  perplexity: number
  /** The argmax next token after each prefix tokens[0..i], i < tokens.length - 1. */
  predictions: Int32Array
}

function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims)
}

export async function scoreText(session: ort.InferenceSession, shape: DecoderShape, tokens: readonly number[]): Promise<TextScore> {
  const S = tokens.length
  if (S < 2) throw new Error('scoreText needs at least two tokens')
  const feeds: Record<string, ort.Tensor> = {
    input_ids: int64(tokens, [1, S]),
    attention_mask: int64(new Array<number>(S).fill(1), [1, S]),
  }
  if (session.inputNames.includes('position_ids'))
    feeds.position_ids = int64(
      tokens.map((_, i) => i),
      [1, S],
    )
  for (let i = 0; i < shape.numLayers; i++) {
    for (const kind of ['key', 'value']) feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, shape.numKvHeads, 0, shape.headDim])
  }
  const out = await session.run(feeds)
  const logits = out.logits!.data as Float32Array
  const V = shape.vocabSize
  const predictions = new Int32Array(S - 1)
  let nll = 0
  for (let i = 0; i < S - 1; i++) {
    const row = i * V
    let best = 0
    for (let v = 1; v < V; v++) if (logits[row + v]! > logits[row + best]!) best = v
    const max = logits[row + best]!
    let sum = 0
    for (let v = 0; v < V; v++) sum += Math.exp(logits[row + v]! - max)
    nll += Math.log(sum) + max - logits[row + tokens[i + 1]!]!
    predictions[i] = best
  }
  nll /= S - 1
  return { nll, perplexity: Math.exp(nll), predictions }
}

/** The fraction of positions where two runs predict the same next token. */
export function agreement(a: Int32Array, b: Int32Array): number {
  if (a.length !== b.length) throw new Error(`agreement of ${a.length} and ${b.length} predictions`)
  let same = 0
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++
  return same / a.length
}
