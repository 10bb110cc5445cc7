// Model presets are data: the builder reads nothing else to decide the architecture.

export type PresetName = 'default' | 'large'

export interface Preset {
  readonly name: PresetName
  readonly hiddenSize: number
  readonly numLayers: number
  readonly numHeads: number
  readonly numKvHeads: number
  readonly headDim: number
  /** 'auto': one MLP neuron per n-gram context, rounded up to a multiple of 64. */
  readonly intermediateSize: number | 'auto'
  /** Target vocabulary size, byte tokens and special tokens included. */
  readonly vocabSize: number
  readonly maxPositions: number
  readonly ropeTheta: number
  readonly rmsNormEps: number
  /** Seed of every random choice in the build. */
  readonly seed: number
}

export const PRESETS: Readonly<Record<PresetName, Preset>> = {
  // A CPU decode step of a few milliseconds: what a new user, and the test suite, run.
  default: {
    name: 'default',
    hiddenSize: 384,
    numLayers: 2,
    numHeads: 6,
    numKvHeads: 2,
    headDim: 64,
    intermediateSize: 'auto',
    vocabSize: 1024,
    maxPositions: 2048,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    seed: 20240601,
  },
  // Tens of millions of parameters for benchmarks; the extra capacity is small random weights.
  large: {
    name: 'large',
    hiddenSize: 1024,
    numLayers: 8,
    numHeads: 16,
    numKvHeads: 4,
    headDim: 64,
    // Fixed so the size stays in the tens of millions; the most frequent trigram contexts fill it.
    intermediateSize: 2048,
    vocabSize: 1024,
    maxPositions: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    seed: 20240602,
  },
}

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name)
}
