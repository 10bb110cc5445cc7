/**
 * Chaos against a running server: requests at a fixed concurrency (streamed and not; greedy, seeded
 * and unseeded), while a random tokenizer, scheduler or worker is SIGKILLed every few seconds. Each
 * answer is checked against the same request's answer in a fault-free pass before the kills. Used by
 * test/soak/chaos.test.ts and `npm run chaos` (bench/chaos.ts).
 */
import { readFileSync } from 'node:fs'
import type { RunningServer } from './server.ts'

export interface ChaosOptions {
  requests: number
  concurrency: number
  maxTokens: number
  /** Pause between kills, ms: drawn from [min, max] once every process is ready again. */
  killEveryMs: [number, number]
  /** Distinct prompts per kind of request (the fault-free pass runs each once). */
  prompts: number
  /** A request still unanswered after this many ms counts as hung (and is dropped). */
  hangMs: number
  seed: number
  /** Requests go on past `requests` until this many kills were made (at most 4 x requests). */
  minKills?: number
  /** The kinds of process to kill (default: all three). */
  kinds?: ProcessKind[]
}

export type ProcessKind = 'tokenizer' | 'scheduler' | 'worker'

export interface Kill {
  key: string
  kind: ProcessKind
  pid: number
  at: number
  /** When its replacement was ready (null: not seen before the end). */
  readyAt: number | null
}

export interface RequestOutcome {
  kind: RequestKind
  stream: boolean
  start: number
  end: number
  status: number
  /** Answered in full: 200, a finish reason, every token, no error event. */
  full: boolean
  hung: boolean
  /** A stream that started and ended without [DONE] or with an error event. */
  cut: boolean
  /** Greedy or seeded, and its text differs from the fault-free pass's. */
  mismatch: boolean
  error: string | null
}

export interface ChaosResult {
  outcomes: RequestOutcome[]
  kills: Kill[]
  /** Median end-to-end ms of the fault-free pass. */
  baselineP50Ms: number
  /** Resident memory of the server and its children (bytes): after the fault-free pass, and after the chaos and a settling pass. */
  rssBefore: number
  rssAfter: number
  /** The server's 'request resumed' log lines by reason. */
  resumedByReason: Record<string, number>
  /** Requests the server process still holds once the chaos is over (should be 0). */
  liveAfter: number
  /** Settling pass after the chaos: answers identical to the fault-free pass. */
  settledMismatches: number
}

type RequestKind = 'greedy' | 'seeded' | 'sampled'

interface Spec {
  kind: RequestKind
  stream: boolean
  prompt: string
  key: string
}

const WORDS = 'the little girl walked to the old house near the forest and the king said that it was a cold morning'.split(' ')

function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32
}

interface Health {
  status: number
  processes: { key: string; role: string; pid: number | null; ready: boolean }[]
  reports: { role: string; pid: number; live_requests: number }[]
}

export async function health(server: RunningServer): Promise<Health> {
  const res = await fetch(server.url + '/health')
  const body = (await res.json()) as Partial<Health>
  return { status: res.status, processes: body.processes ?? [], reports: body.reports ?? [] }
}

export async function waitHealthy(server: RunningServer, ms = 60_000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if ((await health(server)).status === 200) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Resident memory (MiB) of the server and of each child it reports, by process key. */
export async function rssByProcess(server: RunningServer): Promise<Record<string, number>> {
  const h = await health(server)
  const out: Record<string, number> = { server: Math.round(rssOf(server.proc.pid!) / 2 ** 20) }
  for (const p of h.processes) if (p.pid) out[p.key] = Math.round(rssOf(p.pid) / 2 ** 20)
  return out
}

/** Resident memory of the server and every child it reports. */
export async function totalRss(server: RunningServer): Promise<number> {
  const h = await health(server)
  let sum = rssOf(server.proc.pid!)
  for (const p of h.processes) if (p.pid) sum += rssOf(p.pid)
  return sum
}

/**
 * Resident memory once it has settled after the load: V8's memory reducer gives heap back to the
 * system some seconds after allocation stops (Node 24 later than Node 20), and workers give back KV
 * slabs 2 s after they run dry, so readings are taken each second for up to `ms`, the lowest kept,
 * stopping once one is within `target`.
 */
export async function settledRss(server: RunningServer, target: number, ms = 20_000): Promise<number> {
  let low = await totalRss(server)
  const until = Date.now() + ms
  while (low > target && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 1000))
    low = Math.min(low, await totalRss(server))
  }
  return low
}

function body(spec: Spec, maxTokens: number): string {
  const sampling = spec.kind === 'greedy' ? { temperature: 0 } : spec.kind === 'seeded' ? { temperature: 0.9, top_p: 0.95, seed: 1234 } : { temperature: 0.9 }
  return JSON.stringify({
    model: 'default',
    prompt: spec.prompt,
    max_tokens: maxTokens,
    ignore_eos: true,
    stream: spec.stream,
    ...(spec.stream ? { stream_options: { include_usage: true } } : {}),
    ...sampling,
  })
}

interface Answer {
  status: number
  text: string
  completionTokens: number
  finishReason: string | null
  done: boolean
  errorEvent: string | null
}

/** One request; null when it was not answered within hangMs. */
async function send(server: RunningServer, spec: Spec, maxTokens: number, hangMs: number): Promise<Answer | null> {
  const signal = AbortSignal.timeout(hangMs)
  try {
    const res = await fetch(server.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(spec, maxTokens), signal })
    const raw = await res.text()
    if (!spec.stream || res.status !== 200) {
      const j = JSON.parse(raw) as { choices?: { text: string; finish_reason: string }[]; usage?: { completion_tokens: number }; error?: { code: string } }
      return {
        status: res.status,
        text: j.choices?.[0]?.text ?? '',
        completionTokens: j.usage?.completion_tokens ?? 0,
        finishReason: j.choices?.[0]?.finish_reason ?? null,
        done: true,
        errorEvent: j.error?.code ?? null,
      }
    }
    const a: Answer = { status: res.status, text: '', completionTokens: 0, finishReason: null, done: false, errorEvent: null }
    for (const line of raw.split('\n')) {
      if (!line.startsWith('data: ')) continue
      if (line === 'data: [DONE]') {
        a.done = true
        continue
      }
      const j = JSON.parse(line.slice(6)) as { choices?: { text: string; finish_reason: string | null }[]; usage?: { completion_tokens: number }; error?: { code: string } }
      if (j.error) a.errorEvent = j.error.code
      const c = j.choices?.[0]
      if (c) {
        a.text += c.text
        if (c.finish_reason) a.finishReason = c.finish_reason
      }
      if (j.usage && (j.choices?.length ?? 0) === 0) a.completionTokens = j.usage.completion_tokens
    }
    return a
  } catch (err) {
    if ((err as Error).name === 'TimeoutError' || signal.aborted) return null
    return { status: 0, text: '', completionTokens: 0, finishReason: null, done: false, errorEvent: (err as Error).message }
  }
}

function specs(opts: ChaosOptions): Spec[] {
  const rand = rng(opts.seed)
  const out: Spec[] = []
  const kinds: RequestKind[] = ['greedy', 'seeded', 'sampled']
  for (let i = 0; i < opts.prompts; i++) {
    const n = 2 + Math.floor(rand() * 12)
    const prompt = Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ')
    for (const kind of kinds) for (const stream of [true, false]) out.push({ kind, stream, prompt, key: `${kind}|${prompt}` })
  }
  return out
}

function kindOf(key: string): ProcessKind {
  return key.split('-')[0] as ProcessKind
}

async function runPool<T>(n: number, concurrency: number, job: (i: number) => Promise<T>, more: () => boolean = () => false): Promise<T[]> {
  const out: T[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n || (more() && next < 4 * n)) {
        const i = next++
        out[i] = await job(i)
      }
    }),
  )
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!
}

/** The fault-free pass: every distinct request once; greedy and seeded answers become the reference. */
async function referencePass(server: RunningServer, all: Spec[], opts: ChaosOptions): Promise<{ reference: Map<string, string>; p50: number; mismatches: number }> {
  const reference = new Map<string, string>()
  const times: number[] = []
  let mismatches = 0
  await runPool(all.length, opts.concurrency, async (i) => {
    const spec = all[i]!
    const t0 = performance.now()
    const a = await send(server, spec, opts.maxTokens, opts.hangMs)
    times.push(performance.now() - t0)
    if (!a || a.status !== 200 || a.finishReason === null) throw new Error(`fault-free request failed: ${JSON.stringify(a)}`)
    if (spec.kind === 'sampled') return
    const seen = reference.get(spec.key)
    if (seen === undefined) reference.set(spec.key, a.text)
    else if (seen !== a.text) mismatches++
  })
  return { reference, p50: median(times), mismatches }
}

export async function runChaos(server: RunningServer, opts: ChaosOptions, log: (line: string) => void = () => {}): Promise<ChaosResult> {
  const all = specs(opts)
  const first = await referencePass(server, all, opts)
  if (first.mismatches > 0) throw new Error(`the fault-free pass itself is not deterministic (${first.mismatches} streamed/plain pairs differ)`)
  const { reference } = first
  // The baseline at the steady state of a fault-free server: a second pass first, since a young
  // process's heap still grows with its first hundreds of requests, faults or not.
  await referencePass(server, all, opts)
  // Settled too (the lowest of several readings once idle), as the reading after is: a single
  // reading caught a collection or an idle trim half done on one side only.
  const rssBefore = await settledRss(server, 0, 8000)
  log(`resident memory before, MiB: ${JSON.stringify(await rssByProcess(server))}`)
  const rand = rng(opts.seed ^ 0x5eed)
  const kills: Kill[] = []
  let running = true

  // The killer: one process at a time, kinds in shuffled rounds so every kind is hit.
  const killer = (async () => {
    let round: ProcessKind[] = []
    while (running) {
      // The pause starts once every process is back: each kill finds a server that was serving.
      if (!(await waitHealthy(server, 60_000)) || !running) continue
      const pause = opts.killEveryMs[0] + rand() * (opts.killEveryMs[1] - opts.killEveryMs[0])
      await new Promise((r) => setTimeout(r, pause))
      if (!running) break
      if (round.length === 0) round = [...(opts.kinds ?? ['tokenizer', 'scheduler', 'worker'])].sort(() => rand() - 0.5)
      const kind = round.shift()!
      const h = await health(server)
      const candidates = h.processes.filter((p) => p.ready && p.pid && kindOf(p.key) === kind)
      const victim = candidates[Math.floor(rand() * candidates.length)]
      if (!victim) continue
      const kill: Kill = { key: victim.key, kind, pid: victim.pid!, at: performance.now(), readyAt: null }
      try {
        process.kill(victim.pid!, 'SIGKILL')
      } catch {
        continue
      }
      kills.push(kill)
      log(`killed ${victim.key} (pid ${victim.pid})`)
      const seen = server.logs.length
      void server
        .waitForLog((l) => l.msg === 'process ready' && l.child === victim.key && server.logs.indexOf(l) >= seen, 120_000)
        .then(() => (kill.readyAt = performance.now()))
        .catch(() => {})
    }
  })()

  const outcomes = await runPool(
    opts.requests,
    opts.concurrency,
    async (i) => {
      const spec = all[i % all.length]!
      const start = performance.now()
      const a = await send(server, spec, opts.maxTokens, opts.hangMs)
      const end = performance.now()
      if (a === null) return { kind: spec.kind, stream: spec.stream, start, end, status: 0, full: false, hung: true, cut: false, mismatch: false, error: 'hung' }
      const full = a.status === 200 && a.done && a.errorEvent === null && a.finishReason === 'length' && a.completionTokens === opts.maxTokens
      const cut = spec.stream && a.status === 200 && (!a.done || a.errorEvent !== null || a.finishReason === null)
      const ref = reference.get(spec.key)
      const mismatch = a.status === 200 && ref !== undefined && a.text !== ref
      return { kind: spec.kind, stream: spec.stream, start, end, status: a.status, full, hung: false, cut, mismatch, error: a.errorEvent }
    },
    () => kills.length < (opts.minKills ?? 0),
  )
  running = false
  await killer
  await waitHealthy(server, 120_000)
  // Settling pass: the restarted processes answer exactly as before, and warm up for the memory reading.
  const settled = await referencePass(server, all, opts)
  let settledMismatches = 0
  for (const [key, text] of settled.reference) if (reference.get(key) !== text) settledMismatches++
  // Within 10% of the baseline is the bar (test/soak/chaos.test.ts); readings stop once it is met.
  const rssAfter = await settledRss(server, rssBefore * 1.1, 30_000)
  log(`resident memory after, MiB: ${JSON.stringify(await rssByProcess(server))}`)
  const resumedByReason: Record<string, number> = {}
  for (const l of server.logs) if (l.msg === 'request resumed') resumedByReason[l.reason as string] = (resumedByReason[l.reason as string] ?? 0) + 1
  const h = await health(server)
  const liveAfter = h.reports.find((r) => r.role === 'server')?.live_requests ?? -1
  return { outcomes, kills, baselineP50Ms: first.p50, rssBefore, rssAfter, resumedByReason, liveAfter, settledMismatches }
}

export interface KillLatency {
  kind: ProcessKind
  kills: number
  /** Requests in flight or arriving between the kill and its replacement's ready line. */
  affected: number
  /** End-to-end latency of those requests less the fault-free median, ms. */
  p50AddedMs: number
  p99AddedMs: number
  /** Kill to replacement ready, median ms. */
  restartP50Ms: number
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

/** What each kind of kill cost the requests it touched. */
export function killLatencies(r: ChaosResult): KillLatency[] {
  const out: KillLatency[] = []
  for (const kind of ['tokenizer', 'scheduler', 'worker'] as ProcessKind[]) {
    const kills = r.kills.filter((k) => k.kind === kind)
    const added: number[] = []
    const seen = new Set<RequestOutcome>()
    for (const k of kills) {
      const until = k.readyAt ?? k.at
      for (const o of r.outcomes) if (!seen.has(o) && o.start <= until && o.end >= k.at) seen.add(o), added.push(o.end - o.start - r.baselineP50Ms)
    }
    out.push({
      kind,
      kills: kills.length,
      affected: added.length,
      p50AddedMs: quantile(added, 0.5),
      p99AddedMs: quantile(added, 0.99),
      restartP50Ms: quantile(
        kills.filter((k) => k.readyAt !== null).map((k) => k.readyAt! - k.at),
        0.5,
      ),
    })
  }
  return out
}
