/**
 * A small parser of the Prometheus text and OpenMetrics exposition formats, as a scraper reads
 * them: samples with labels and values, and OpenMetrics exemplars.
 */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
  exemplar: { labels: Record<string, string>; value: number } | null
}

export interface Exposition {
  samples: Sample[]
  types: Map<string, string>
  /** Sum of the samples named `name` whose labels include `match`. */
  sum(name: string, match?: Record<string, string>): number
}

function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
  return out
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\S+)?(?:\s+#\s+(\{[^}]*\})\s+(\S+)(?:\s+\S+)?)?\s*$/

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line === '# EOF') continue
    if (line.startsWith('#')) {
      const t = /^# TYPE (\S+) (\S+)/.exec(line)
      if (t) types.set(t[1]!, t[2]!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`unparsable exposition line: ${line}`)
    const value = Number(m[3] === '+Inf' ? Infinity : m[3])
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in: ${line}`)
    samples.push({
      name: m[1]!,
      labels: m[2] ? parseLabels(m[2]) : {},
      value,
      exemplar: m[4] ? { labels: parseLabels(m[4]), value: Number(m[5]) } : null,
    })
  }
  return {
    samples,
    types,
    sum: (name, match = {}) => samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0),
  }
}

/**
 * The server's metrics once no KV is reserved or held (the budget usage and every worker's live
 * tokens at 0), or as they stand after `timeoutMs`: what a test checks after its requests end.
 */
export async function metricsOnceKvFreed(url: string, timeoutMs = 10_000): Promise<Exposition> {
  const read = async () => parseExposition(await (await fetch(url + '/metrics')).text())
  const until = Date.now() + timeoutMs
  let m = await read()
  while (Date.now() < until && (m.sum('spanserve:kv_cache_usage_perc') !== 0 || m.sum('spanserve:kv_cache_tokens') !== 0)) {
    await new Promise((r) => setTimeout(r, 100))
    m = await read()
  }
  return m
}
