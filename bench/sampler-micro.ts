/**
 * Sampler microbenchmark: the worker's Sampler (src/worker/sampler.ts, partial selection) against the
 * full sort of the vocabulary it replaced, per sampled token, at real vocabulary sizes; and a check
 * that both draw the same tokens for the same seeds.
 * Run: node --import tsx bench/sampler-micro.ts [--vocab 32000,151936] [--draws 200]
 */
import { parseArgs } from 'node:util'
import { Sampler } from '../src/worker/sampler.ts'
import { CASES, FullSortSampler, fakeLogits } from '../harness/sampling.ts'

export interface SamplerMicroRow {
  vocab: number
  sampling: string
  fullSortUs: number
  partialUs: number
  sameTokens: boolean
}

/** Per sampled token, both samplers on the same logits and seeds. */
export function runSamplerMicro(vocabs: readonly number[], draws: number): SamplerMicroRow[] {
  const rows: SamplerMicroRow[] = []
  for (const vocab of vocabs) {
    const logits = Array.from({ length: 8 }, (_, i) => fakeLogits(vocab, 100 + i))
    for (const c of CASES) {
      const time = (s: { sample(l: Float32Array, o: number, v: number): number }): { us: number; tokens: number[] } => {
        const tokens: number[] = []
        const t0 = performance.now()
        for (let d = 0; d < draws; d++) tokens.push(s.sample(logits[d % logits.length]!, 0, vocab))
        return { us: ((performance.now() - t0) * 1000) / draws, tokens }
      }
      // Interleaved halves, so that load from elsewhere falls on both alike.
      const full = time(new FullSortSampler({ ...c.params, seed: 7 }))
      const part = time(new Sampler({ ...c.params, seed: 7 }))
      rows.push({ vocab, sampling: c.name, fullSortUs: full.us, partialUs: part.us, sameTokens: full.tokens.every((t, i) => t === part.tokens[i]) })
    }
  }
  return rows
}

export function samplerMicroTable(rows: readonly SamplerMicroRow[]): string {
  return [
    '| vocab | sampling | full sort µs/token | partial µs/token | speed-up | same tokens |',
    '| ---: | --- | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.vocab} | ${r.sampling} | ${r.fullSortUs.toFixed(0)} | ${r.partialUs.toFixed(0)} | ${(r.fullSortUs / r.partialUs).toFixed(1)}× | ${r.sameTokens ? 'yes' : 'NO'} |`),
  ].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { vocab: { type: 'string', default: '32000,151936' }, draws: { type: 'string', default: '200' } } })
  console.log(samplerMicroTable(runSamplerMicro(values.vocab.split(',').map(Number), Number(values.draws))))
}
