/**
 * `npm run bench -- --router` (issue 31): what `spanserve router` costs and what its cache-aware
 * routing buys, each a ratio from one run on the default model.
 *
 * - overhead: one instance; TTFT p50 at concurrency 1 through a router in front of it over straight
 *   to it (target <= 1.05), and through a bare pass-through proxy process as the control, the
 *   requests interleaved A B C C B A, every prompt distinct;
 * - routing: three instances (`--intra-op-threads 1` each, so three fit on two cores) behind two
 *   routers at once, `--policy cache_aware` and `--policy round_robin`; multi-turn chats whose every
 *   turn resends the conversation so far, in rounds of balanced order; TTFT p50 of turns 2..N,
 *   cache-aware over round robin (target <= 0.5), and the share of their prompt tokens that the
 *   instances' prefix caches served.
 * - disaggregation: the same 2 cores as (a) a router in front of a prefill instance and a decode
 *   instance (`--disaggregation-mode`, `--intra-op-threads 1` each) and (b) a router in front of one
 *   co-located instance with `--dp-size 2 --intra-op-threads 1`: the same processes' worth of workers
 *   (two, one ONNX Runtime thread each) split by phase in (a) and by request in (b). Steady streamed
 *   requests (short prompts, 128 tokens each, a fixed number in flight) with long-prompt requests
 *   arriving among them at a fixed interval; the steady requests' TTFT p50 and inter-token latency
 *   p99 in both shapes, phases in the order A B B A.
 *
 * SPANSERVE_BENCH_ROUTER_PARTS=overhead,routing,pd (the default: all) runs the parts it names.
 * Writes <out>/router-<date>.json and prints it.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { ensureModel } from '../src/model/build.ts'
import type { PolicyName } from '../src/router/policy.ts'
import { createRng } from '../src/model/rng.ts'
import { ROOT } from '../harness/server.ts'
import { JsonLineChild } from './child-lines.ts'
import { startSpanserve, type RunningSpanserve } from './configs/spanserve.ts'
import { makePrompts } from './prompts.ts'
import { median, percentile } from './stats.ts'
import { sseEvents } from './sse-events.ts'

const say = (line: string): void => void process.stderr.write(`${line}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const OVERHEAD_BLOCKS = 20 // of A B C C B A: 40 requests a side
const CONVERSATIONS = 6 // a round's
/** Balanced order: in each pair of rounds, each policy goes first as often as the other. */
const ROUNDS: readonly Policy[] = ['cache_aware', 'round_robin', 'round_robin', 'cache_aware', 'round_robin', 'cache_aware', 'cache_aware', 'round_robin']
const TURNS = 4
const FIRST_TOKENS = 600
const CONCURRENCY = 3
/**
 * A user's pause before each turn, exponential with this mean (capped at 4x): with three closed loops
 * over three instances and pauses short against the requests, each loop sends about every third
 * request, and round robin kept most conversations on one instance (turn 2 p50 50 ms, not a miss).
 */
const THINK_MEAN_MS = 400
const REPLY_TOKENS = 16

type Policy = PolicyName

interface Sample {
  ttftMs: number
  text: string
  promptTokens: number
  cachedTokens: number
}

/** One streamed request; the first non-empty text is its first token. */
async function stream(url: string, path: string, body: Record<string, unknown>): Promise<Sample> {
  const t0 = performance.now()
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', temperature: 0, ignore_eos: true, ...body, stream: true, stream_options: { include_usage: true } }),
  })
  if (res.status !== 200 || !res.body) throw new Error(`${path}: HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`)
  const sample: Sample = { ttftMs: Number.NaN, text: '', promptTokens: 0, cachedTokens: 0 }
  type Event = {
    error?: { message: string }
    choices?: { text?: string; delta?: { content?: string } }[]
    usage?: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } }
  }
  for await (const obj of sseEvents<Event>(res.body)) {
    if (obj.error) throw new Error(`stream error: ${obj.error.message}`)
    const text = obj.choices?.map((c) => c.text ?? c.delta?.content ?? '').join('') ?? ''
    if (text !== '' && Number.isNaN(sample.ttftMs)) sample.ttftMs = performance.now() - t0
    sample.text += text
    if (obj.usage) {
      sample.promptTokens = obj.usage.prompt_tokens
      sample.cachedTokens = obj.usage.prompt_tokens_details?.cached_tokens ?? 0
    }
  }
  return sample
}

interface Router {
  url: string
  child: JsonLineChild
}

/** `spanserve router` as users start it, in front of `instances` (or with `flags` naming them). */
async function startRouter(instances: readonly string[], policy: Policy, flags: readonly string[] = []): Promise<Router> {
  const args = [join(ROOT, 'bin/spanserve.js'), 'router', '--port', '0', '--policy', policy, ...instances.flatMap((u) => ['--instance', u]), ...flags]
  const child = JsonLineChild.start(`router (${flags.length > 0 ? 'prefill/decode' : policy})`, args, { SPANSERVE_LOG_FORMAT: 'json' })
  const ready = await child.waitFor((l) => l.msg === 'spanserve router listening', 60_000)
  return { url: `http://127.0.0.1:${ready.port as number}`, child }
}

/** The router's decisions so far, from its /metrics. */
async function decisions(router: Router): Promise<Record<string, number>> {
  const text = await (await fetch(`${router.url}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^spanserve:router_decisions_total\{decision="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2])
  return out
}

const completion = (prompt: number[], maxTokens: number) => ({ prompt, max_tokens: maxTokens })

const SIDES = ['direct', 'router', 'bare proxy'] as const

/**
 * 1. TTFT at concurrency 1 through a router over straight to its one instance, and through a bare
 * pass-through proxy process (bench/pass-through-proxy.ts): what any extra hop costs on this machine.
 */
async function overhead(modelDir: string) {
  const { prompts } = makePrompts(modelDir, 64, 64 + 6 * OVERHEAD_BLOCKS)
  const server = await startSpanserve({ modelDir, traceLevel: null, maxBatchSize: 64, extraArgs: [] })
  let router: Router | null = null
  let bare: JsonLineChild | null = null
  try {
    router = await startRouter([server.url], 'cache_aware')
    bare = JsonLineChild.start('pass-through proxy', ['--import', 'tsx', join(ROOT, 'bench/pass-through-proxy.ts'), server.url])
    const urls = { direct: server.url, router: router.url, 'bare proxy': `http://127.0.0.1:${(await bare.waitFor((l) => typeof l.port === 'number')).port as number}` }
    // Warm-up: the instance, and each proxy's V8 on its hot path; prompts 0-63 are not measured.
    for (const side of SIDES)
      await Promise.all(
        Array.from({ length: 4 }, (_, s) =>
          (async () => {
            for (let i = s; i < 64; i += 4) await stream(urls[side], '/v1/completions', completion(prompts[i]!, 4))
          })(),
        ),
      )
    const ttft: Record<(typeof SIDES)[number], number[]> = { direct: [], router: [], 'bare proxy': [] }
    let next = 64
    for (let k = 0; k < OVERHEAD_BLOCKS; k++) {
      for (const side of [...SIDES, ...[...SIDES].reverse()]) ttft[side].push((await stream(urls[side], '/v1/completions', completion(prompts[next++]!, 16))).ttftMs)
    }
    const p50 = (side: (typeof SIDES)[number]) => percentile(ttft[side], 50)
    const ratio = p50('router') / p50('direct')
    return {
      requestsEachSide: ttft.direct.length,
      order: 'A B C C B A (direct, router, bare proxy)',
      promptTokens: 64,
      maxTokens: 16,
      directTtftP50: p50('direct'),
      routerTtftP50: p50('router'),
      bareProxyTtftP50: p50('bare proxy'),
      directTtftP90: percentile(ttft.direct, 90),
      routerTtftP90: percentile(ttft.router, 90),
      bareProxyTtftP90: percentile(ttft['bare proxy'], 90),
      // Request i through a proxy against request i straight to the instance (the same block).
      routerPairedDifferenceMsP50: median(ttft.router.map((r, i) => r - ttft.direct[i]!)),
      bareProxyPairedDifferenceMsP50: median(ttft['bare proxy'].map((r, i) => r - ttft.direct[i]!)),
      bareProxyRatio: p50('bare proxy') / p50('direct'),
      ratio,
      target: 1.05,
      met: ratio <= 1.05,
    }
  } finally {
    await bare?.stop()
    await router?.child.stop()
    await server.stop()
  }
}

/** A conversation's turns: a long first message, then short questions; the replies are the model's. */
function conversationTurns(first: string, questions: readonly string[]): string[] {
  return [`Read this passage, then answer my questions about it.\n\n${first}`, ...questions.map((q, k) => `Question ${k + 1}: what follows "${q.trim()}"?`)]
}

interface Turn extends Sample {
  turn: number
}

/** Conversations `CONCURRENCY` at a time through `url`, each turn resending the conversation so far. */
async function converse(url: string, conversations: string[][], seed: number): Promise<Turn[]> {
  const rng = createRng(seed)
  const turns: Turn[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < conversations.length) {
        const users = conversations[next++]!
        const messages: { role: string; content: string }[] = []
        for (const [k, user] of users.entries()) {
          await sleep(Math.min(4, -Math.log(1 - rng.next())) * THINK_MEAN_MS)
          messages.push({ role: 'user', content: user })
          const s = await stream(url, '/v1/chat/completions', { messages, max_tokens: REPLY_TOKENS })
          messages.push({ role: 'assistant', content: s.text })
          turns.push({ ...s, turn: k + 1 })
        }
      }
    }),
  )
  return turns
}

function summarise(turns: readonly Turn[]) {
  const later = turns.filter((t) => t.turn > 1)
  const first = turns.filter((t) => t.turn === 1)
  const sum = (xs: readonly Turn[], f: (t: Turn) => number) => xs.reduce((a, t) => a + f(t), 0)
  return {
    requests: turns.length,
    firstTurnTtftP50: percentile(
      first.map((t) => t.ttftMs),
      50,
    ),
    laterTurnsTtftP50: percentile(
      later.map((t) => t.ttftMs),
      50,
    ),
    laterTurnsTtftP90: percentile(
      later.map((t) => t.ttftMs),
      90,
    ),
    // Round robin's later turns are two populations (a cached prefix or none): their p50 falls near the
    // boundary, so the mean and each turn's p50 are kept beside it.
    laterTurnsTtftMean: sum(later, (t) => t.ttftMs) / later.length,
    ttftP50ByTurn: Array.from({ length: TURNS }, (_, k) =>
      percentile(
        turns.filter((t) => t.turn === k + 1).map((t) => t.ttftMs),
        50,
      ),
    ),
    laterTurnsCachedShare: sum(later, (t) => t.cachedTokens) / sum(later, (t) => t.promptTokens),
    firstTurnPromptTokensP50: percentile(
      first.map((t) => t.promptTokens),
      50,
    ),
    lastTurnPromptTokensP50: percentile(
      turns.filter((t) => t.turn === TURNS).map((t) => t.promptTokens),
      50,
    ),
  }
}

/** 2. Multi-turn chats over three instances: cache-aware routing against round robin. */
async function routing(modelDir: string) {
  const { prompts: firsts, tokenizer } = makePrompts(modelDir, FIRST_TOKENS, 16 + ROUNDS.length * CONVERSATIONS)
  const { prompts: snippets } = makePrompts(modelDir, 12, 997)
  const text = (ids: number[]) => tokenizer.decode(ids, { skip_special_tokens: true })
  // Every conversation its own: no two share a first message, so only a turn's own history can be cached.
  const conversation = (c: number) =>
    conversationTurns(
      text(firsts[16 + c]!),
      Array.from({ length: TURNS - 1 }, (_, k) => text(snippets[(c * 7 + k * 331) % snippets.length]!)),
    )
  const threads = ['--intra-op-threads', '1']
  const servers: RunningSpanserve[] = []
  const routers: Partial<Record<Policy, Router>> = {}
  try {
    for (let i = 0; i < 3; i++) servers.push(await startSpanserve({ modelDir, traceLevel: null, maxBatchSize: 64, extraArgs: threads }))
    const urls = servers.map((s) => s.url)
    for (const policy of ['cache_aware', 'round_robin'] as const) routers[policy] = await startRouter(urls, policy)
    // Warm-up: every instance directly, then each router; prompts unlike any conversation's.
    for (const url of urls) await Promise.all(Array.from({ length: 4 }, (_, i) => stream(url, '/v1/chat/completions', { messages: [{ role: 'user', content: text(firsts[i]!) }], max_tokens: 4 })))
    for (const [p, policy] of (['cache_aware', 'round_robin'] as const).entries())
      for (let i = 0; i < 6; i++) await stream(routers[policy]!.url, '/v1/chat/completions', { messages: [{ role: 'user', content: text(firsts[4 + p * 6 + i]!.slice(0, 64)) }], max_tokens: 4 })
    const before = { cache_aware: await decisions(routers.cache_aware!), round_robin: await decisions(routers.round_robin!) }
    const rounds: { policy: Policy; turns: Turn[] }[] = []
    for (const [r, policy] of ROUNDS.entries()) {
      const convs = Array.from({ length: CONVERSATIONS }, (_, c) => conversation(r * CONVERSATIONS + c))
      const turns = await converse(routers[policy]!.url, convs, r + 1)
      const s = summarise(turns)
      say(
        `  round ${r + 1}, ${policy}: turns 2-${TURNS} TTFT p50 ${s.laterTurnsTtftP50.toFixed(1)} ms (turn 1: ${s.firstTurnTtftP50.toFixed(1)} ms), ${(100 * s.laterTurnsCachedShare).toFixed(0)}% of their prompt tokens cached`,
      )
      rounds.push({ policy, turns })
    }
    const side = async (policy: Policy) => {
      const after = await decisions(routers[policy]!)
      const own = rounds.filter((r) => r.policy === policy)
      return {
        ...summarise(own.flatMap((r) => r.turns)),
        rounds: own.map((r) => summarise(r.turns)),
        decisions: Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[policy][k] ?? 0)])),
      }
    }
    const cacheAware = await side('cache_aware')
    const roundRobin = await side('round_robin')
    const ratio = cacheAware.laterTurnsTtftP50 / roundRobin.laterTurnsTtftP50
    const meanRatio = cacheAware.laterTurnsTtftMean / roundRobin.laterTurnsTtftMean
    return {
      instances: 3,
      instanceArgs: threads.join(' '),
      conversationsPerPolicy: (CONVERSATIONS * ROUNDS.length) / 2,
      turns: TURNS,
      firstMessageTokens: FIRST_TOKENS,
      replyTokens: REPLY_TOKENS,
      concurrency: CONCURRENCY,
      thinkMsMean: THINK_MEAN_MS,
      order: ROUNDS.join(', '),
      cacheAware,
      roundRobin,
      ratio,
      meanRatio,
      target: 0.5,
      met: ratio <= 0.5,
    }
  } finally {
    for (const r of Object.values(routers)) await r.child.stop()
    for (const s of servers) await s.stop()
  }
}

/** Steady requests in flight at once, each a short prompt streaming PD_STEADY_TOKENS tokens. */
const PD_STEADY = 8
const PD_STEADY_PROMPT = 32
const PD_STEADY_TOKENS = 128
/** A long-prompt request every PD_LONG_EVERY_MS, PD_LONG_TOKENS tokens answered. */
const PD_LONG_PROMPT = 1536
const PD_LONG_TOKENS = 16
const PD_LONG_EVERY_MS = 2000
const PD_PHASE_MS = 20_000
type Shape = 'disaggregated' | 'colocated'
const PD_PHASES: readonly Shape[] = ['disaggregated', 'colocated', 'colocated', 'disaggregated']

interface Timed {
  ttftMs: number
  /** Milliseconds between consecutive streamed chunks with text, after the first. */
  gapsMs: number[]
  tokens: number
}

/** One streamed completion, every text chunk's arrival timed. */
async function streamTimed(url: string, prompt: number[], maxTokens: number): Promise<Timed> {
  const t0 = performance.now()
  const res = await fetch(url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  })
  if (res.status !== 200 || !res.body) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`)
  const out: Timed = { ttftMs: Number.NaN, gapsMs: [], tokens: 0 }
  let last = 0
  for await (const obj of sseEvents<{ error?: { message: string }; choices?: { text?: string }[] }>(res.body)) {
    if (obj.error) throw new Error(`stream error: ${obj.error.message}`)
    if (!obj.choices?.some((c) => (c.text ?? '') !== '')) continue
    const now = performance.now()
    if (Number.isNaN(out.ttftMs)) out.ttftMs = now - t0
    else out.gapsMs.push(now - last)
    last = now
    out.tokens++
  }
  return out
}

/** One phase on `url`: PD_STEADY closed loops of steady requests, and a long prompt every PD_LONG_EVERY_MS. */
async function pdPhase(url: string, steadyPrompts: number[][], longPrompts: number[][], next: { steady: number; long: number }) {
  const until = performance.now() + PD_PHASE_MS
  const steady: Timed[] = []
  const long: Timed[] = []
  const longs: Promise<void>[] = []
  const arrivals = (async () => {
    while (performance.now() < until) {
      const prompt = longPrompts[next.long++ % longPrompts.length]!
      longs.push(streamTimed(url, prompt, PD_LONG_TOKENS).then((r) => void long.push(r)))
      await sleep(PD_LONG_EVERY_MS)
    }
  })()
  await Promise.all(
    Array.from({ length: PD_STEADY }, async (_, k) => {
      // Staggered starts, so that the steady requests do not finish in lockstep.
      await sleep((k * 150) % 1000)
      while (performance.now() < until) steady.push(await streamTimed(url, steadyPrompts[next.steady++ % steadyPrompts.length]!, PD_STEADY_TOKENS))
    }),
  )
  await arrivals
  await Promise.all(longs)
  return { steady, long }
}

function pdSummary(runs: readonly { steady: Timed[]; long: Timed[]; wallMs: number }[]) {
  const steady = runs.flatMap((r) => r.steady)
  const long = runs.flatMap((r) => r.long)
  const gaps = steady.flatMap((r) => r.gapsMs)
  const wallMs = runs.reduce((a, r) => a + r.wallMs, 0)
  return {
    steadyRequests: steady.length,
    steadyTtftP50: percentile(
      steady.map((r) => r.ttftMs),
      50,
    ),
    steadyTtftP90: percentile(
      steady.map((r) => r.ttftMs),
      90,
    ),
    steadyItlP50: percentile(gaps, 50),
    steadyItlP99: percentile(gaps, 99),
    steadyTokensPerSec: (steady.reduce((a, r) => a + r.tokens, 0) / wallMs) * 1000,
    longRequests: long.length,
    longTtftP50: percentile(
      long.map((r) => r.ttftMs),
      50,
    ),
    phases: runs.map((r) => ({
      steadyTtftP50: percentile(
        r.steady.map((x) => x.ttftMs),
        50,
      ),
      steadyItlP99: percentile(
        r.steady.flatMap((x) => x.gapsMs),
        99,
      ),
      longTtftP50: percentile(
        r.long.map((x) => x.ttftMs),
        50,
      ),
    })),
  }
}

/** 3. Prefill/decode disaggregation against a co-located instance with as many workers, on the same cores. */
async function disaggregation(modelDir: string) {
  const { prompts: steadyPrompts } = makePrompts(modelDir, PD_STEADY_PROMPT, 1200)
  const { prompts: longPrompts } = makePrompts(modelDir, PD_LONG_PROMPT, 64)
  const one = ['--intra-op-threads', '1']
  const colocatedArgs = ['--dp-size', '2', ...one]
  const started: RunningSpanserve[] = []
  const routers: Router[] = []
  try {
    const [prefill, decode, colocated] = await Promise.all([
      startSpanserve({ modelDir, traceLevel: null, maxBatchSize: 64, extraArgs: [...one, '--disaggregation-mode', 'prefill'] }),
      startSpanserve({ modelDir, traceLevel: null, maxBatchSize: 64, extraArgs: [...one, '--disaggregation-mode', 'decode', '--disaggregation-bootstrap-port', '0'] }),
      startSpanserve({ modelDir, traceLevel: null, maxBatchSize: 64, extraArgs: colocatedArgs }),
    ])
    started.push(prefill, decode, colocated)
    const pd = await startRouter([], 'cache_aware', ['--prefill', prefill.url, '--decode', decode.url])
    routers.push(pd)
    const co = await startRouter([colocated.url], 'cache_aware')
    routers.push(co)
    const urls: Record<Shape, string> = { disaggregated: pd.url, colocated: co.url }
    const next = { steady: 0, long: 0 }
    // Warm-up: each shape, steady and long, unmeasured.
    for (const shape of ['disaggregated', 'colocated'] as const)
      await Promise.all([...Array.from({ length: 4 }, () => streamTimed(urls[shape], steadyPrompts[next.steady++]!, 16)), streamTimed(urls[shape], longPrompts[next.long++]!, 4)])
    const runs: Record<Shape, { steady: Timed[]; long: Timed[]; wallMs: number }[]> = { disaggregated: [], colocated: [] }
    for (const shape of PD_PHASES) {
      const t0 = performance.now()
      const r = await pdPhase(urls[shape], steadyPrompts, longPrompts, next)
      runs[shape].push({ ...r, wallMs: performance.now() - t0 })
      const s = pdSummary([runs[shape].at(-1)!])
      say(
        `  ${shape}: steady TTFT p50 ${s.steadyTtftP50.toFixed(1)} ms, ITL p50 ${s.steadyItlP50.toFixed(1)} ms, p99 ${s.steadyItlP99.toFixed(1)} ms (${s.steadyRequests} requests); long-prompt TTFT p50 ${s.longTtftP50.toFixed(0)} ms (${s.longRequests})`,
      )
    }
    const disaggregated = pdSummary(runs.disaggregated)
    const colocatedSummary = pdSummary(runs.colocated)
    return {
      shapes: {
        disaggregated: `router --prefill --decode; a prefill and a decode instance, ${one.join(' ')} each`,
        colocated: `router --instance; one instance, ${colocatedArgs.join(' ')}`,
      },
      steadyConcurrency: PD_STEADY,
      steadyPromptTokens: PD_STEADY_PROMPT,
      steadyMaxTokens: PD_STEADY_TOKENS,
      longPromptTokens: PD_LONG_PROMPT,
      longMaxTokens: PD_LONG_TOKENS,
      longEveryMs: PD_LONG_EVERY_MS,
      phaseMs: PD_PHASE_MS,
      order: PD_PHASES.join(', '),
      disaggregated,
      colocated: colocatedSummary,
      steadyItlP99Ratio: disaggregated.steadyItlP99 / colocatedSummary.steadyItlP99,
      steadyTtftP50Ratio: disaggregated.steadyTtftP50 / colocatedSummary.steadyTtftP50,
      longTtftP50Ratio: disaggregated.longTtftP50 / colocatedSummary.longTtftP50,
    }
  } finally {
    for (const r of routers) await r.child.stop()
    for (const s of started) await s.stop()
  }
}

export async function runRouter(outDir: string): Promise<void> {
  const modelDir = await ensureModel({ preset: 'default', log: say })
  let commit: string | null = null
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {
    /* not a checkout */
  }
  const date = new Date().toISOString()
  const result: Record<string, unknown> = { date, commit, model: 'default', cpus: cpus().length, loadAverageAtStart: loadavg() }
  // SPANSERVE_BENCH_ROUTER_PARTS=overhead,routing,pd (default all): a part alone, when working on it.
  const parts = new Set((process.env.SPANSERVE_BENCH_ROUTER_PARTS ?? 'overhead,routing,pd').split(','))
  const verdicts: string[] = []
  if (parts.has('overhead')) {
    say('router overhead: one instance, TTFT at concurrency 1, through the router, straight to it, and through a bare proxy')
    const o = await overhead(modelDir)
    result.overhead = o
    say(
      `  TTFT p50 ${o.routerTtftP50.toFixed(2)} ms through the router, ${o.directTtftP50.toFixed(2)} ms direct: ${o.ratio.toFixed(3)}x (target <= 1.05); a bare pass-through proxy: ${o.bareProxyTtftP50.toFixed(2)} ms, ${o.bareProxyRatio.toFixed(3)}x`,
    )
    verdicts.push(`${o.met ? 'met' : 'NOT met'}: router / direct TTFT p50 at c1 ${o.ratio.toFixed(3)} (<= 1.05)`)
  }
  if (parts.has('routing')) {
    say(`routing: ${(CONVERSATIONS * ROUNDS.length) / 2} conversations x ${TURNS} turns a policy over 3 instances, concurrency ${CONCURRENCY}`)
    const g = await routing(modelDir)
    result.routing = g
    say(
      `  turns 2-${TURNS} TTFT p50 ${g.cacheAware.laterTurnsTtftP50.toFixed(1)} ms cache_aware, ${g.roundRobin.laterTurnsTtftP50.toFixed(1)} ms round_robin: ${g.ratio.toFixed(3)}x (target <= 0.5; means ${g.meanRatio.toFixed(3)}x); cached ${(100 * g.cacheAware.laterTurnsCachedShare).toFixed(0)}% vs ${(100 * g.roundRobin.laterTurnsCachedShare).toFixed(0)}%`,
    )
    verdicts.push(`${g.met ? 'met' : 'NOT met'}: cache_aware / round_robin TTFT p50, turns 2-${TURNS}, ${g.ratio.toFixed(3)} (<= 0.5)`)
  }
  if (parts.has('pd')) {
    say(
      `disaggregation: ${PD_STEADY} steady streams (${PD_STEADY_PROMPT}-token prompts, ${PD_STEADY_TOKENS} tokens) and a ${PD_LONG_PROMPT}-token prompt every ${PD_LONG_EVERY_MS} ms; a prefill + a decode instance against one --dp-size 2 instance`,
    )
    const d = await disaggregation(modelDir)
    result.disaggregation = d
    say(
      `  steady ITL p99 ${d.disaggregated.steadyItlP99.toFixed(1)} ms disaggregated, ${d.colocated.steadyItlP99.toFixed(1)} ms co-located: ${d.steadyItlP99Ratio.toFixed(3)}x; steady TTFT p50 ${d.disaggregated.steadyTtftP50.toFixed(1)} vs ${d.colocated.steadyTtftP50.toFixed(1)} ms: ${d.steadyTtftP50Ratio.toFixed(3)}x`,
    )
  }
  result.loadAverageAtEnd = loadavg()
  const dir = resolve(outDir)
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `router-${date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  process.stdout.write(JSON.stringify(result, null, 2) + '\n')
  for (const v of verdicts) say(v)
  say(`written: ${file}`)
}
