import { OPTIONS, type Config, type OptionSpec } from './schema.ts'
import { ConfigError } from './config-error.ts'
import { applyKeyFiles, type KeyFilePair } from './key-files.ts'
import { checkTraceKeep } from './tracing.ts'

export { ConfigError }

/** Keys that may come from a file instead, so that they stay off command lines (key-files.ts). */
const KEY_FILES: readonly KeyFilePair[] = [
  { key: 'apiKey', file: 'apiKeyFile', keyFlag: '--api-key', fileFlag: '--api-key-file' },
  { key: 'adminApiKey', file: 'adminApiKeyFile', keyFlag: '--admin-api-key', fileFlag: '--admin-api-key-file' },
]

const specs: readonly OptionSpec[] = OPTIONS
const byFlag = new Map<string, OptionSpec>()
for (const s of specs) {
  byFlag.set(s.flag, s)
  for (const a of s.aliases ?? []) byFlag.set(a, s)
}

function parseKv(text: string, where: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of text.split(',')) {
    if (part.trim() === '') continue
    const eq = part.indexOf('=')
    if (eq <= 0) throw new ConfigError(`${where}: expected key=value pairs separated by commas`)
    out[decodeURIComponent(part.slice(0, eq).trim())] = decodeURIComponent(part.slice(eq + 1).trim())
  }
  return out
}

function parseValue(spec: OptionSpec, raw: string, where: string): unknown {
  switch (spec.type) {
    case 'int':
    case 'float': {
      const n = Number(raw)
      if (raw.trim() === '' || !Number.isFinite(n) || (spec.type === 'int' && !Number.isInteger(n))) {
        throw new ConfigError(`${where}: expected ${spec.type === 'int' ? 'an integer' : 'a number'}, got "${raw}"`)
      }
      if (spec.min !== undefined && n < spec.min) throw new ConfigError(`${where}: must be at least ${spec.min}, got ${n}`)
      if (spec.max !== undefined && n > spec.max) throw new ConfigError(`${where}: must be at most ${spec.max}, got ${n}`)
      return n
    }
    case 'bool': {
      const v = raw.toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off'].includes(v)) return false
      throw new ConfigError(`${where}: expected true or false, got "${raw}"`)
    }
    case 'enum':
      if (!spec.choices!.includes(raw)) throw new ConfigError(`${where}: expected one of ${spec.choices!.join(', ')}, got "${raw}"`)
      return raw
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    case 'kv':
      return parseKv(raw, where)
    case 'string':
      return raw
  }
}

/** OTEL_TRACES_SAMPLER names the sampler kind; its ratio comes from OTEL_TRACES_SAMPLER_ARG. */
function applySamplerVariable(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv, fromFlags: Set<string>): void {
  const sampler = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase()
  if (!sampler) return
  const known = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']
  if (!known.includes(sampler)) throw new ConfigError(`OTEL_TRACES_SAMPLER: expected one of ${known.join(', ')}, got "${sampler}"`)
  if (!fromFlags.has('traceIgnoreParentSampling')) cfg.traceIgnoreParentSampling = !sampler.startsWith('parentbased_')
  if (!fromFlags.has('traceSampleRate')) {
    if (sampler.endsWith('always_on')) cfg.traceSampleRate = 1
    else if (sampler.endsWith('always_off')) cfg.traceSampleRate = 0
  }
}

export interface ParseResult {
  config: Config
  help: boolean
}

/** Flags first, then environment variables (in each option's listed order), then defaults. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParseResult {
  const cfg: Record<string, unknown> = {}
  const fromFlags = new Set<string>()
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      help = true
      continue
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (see --help)`)
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    let spec = byFlag.get(name)
    let negated = false
    if (!spec && name.startsWith('--no-')) {
      spec = byFlag.get('--' + name.slice(5))
      negated = spec?.type === 'bool'
      if (!negated) spec = undefined
    }
    if (!spec) throw new ConfigError(`unknown flag ${name} (see --help)`)
    let raw: string
    if (eq > 0) raw = arg.slice(eq + 1)
    else if (spec.type === 'bool') {
      const next = argv[i + 1]
      if (next !== undefined && /^(true|false|1|0|yes|no|on|off)$/i.test(next)) raw = argv[++i]!
      else raw = 'true'
    } else {
      if (i + 1 >= argv.length) throw new ConfigError(`${name} needs a value`)
      raw = argv[++i]!
    }
    let value = parseValue(spec, raw, name)
    if (negated) value = !value
    cfg[spec.key] = value
    fromFlags.add(spec.key)
  }
  const fromEnv = new Set<string>()
  for (const spec of specs) {
    if (fromFlags.has(spec.key)) continue
    const name = spec.env?.find((e) => env[e] !== undefined && env[e] !== '')
    if (name !== undefined) fromEnv.add(spec.key)
    cfg[spec.key] = name !== undefined ? parseValue(spec, env[name]!, name) : structuredClone(spec.default)
  }
  applySamplerVariable(cfg, env, fromFlags)
  applyKeyFiles(cfg, KEY_FILES, (key) => (fromFlags.has(key) ? 'flag' : fromEnv.has(key) ? 'env' : 'default'))
  const config = cfg as Config
  checkLayout(config)
  return { config, help }
}

/** Options that only make sense together. */
function checkLayout(c: Config): void {
  if (c.ipc !== 'ipc' && !/^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.test(c.ipc)) throw new ConfigError(`--ipc: expected "ipc" or tcp://HOST:PORT, got "${c.ipc}"`)
  const port = Number(/:(\d+)$/.exec(c.ipc)?.[1] ?? 1)
  // server, tokenizer, schedulers, workers, all-reduce inboxes, node agents: one port each.
  const ports = 2 + c.dpSize + c.dpSize * c.tpSize * (c.tpSize > 1 ? 2 : 1) + c.nnodes - 1
  if (c.ipc !== 'ipc' && (port < 1 || port + ports - 1 > 65535)) throw new ConfigError(`--ipc: ports ${port}..${port + ports - 1} do not fit below 65536`)
  // Only TP rank 0 samples: the other ranks learn each step's tokens from the scheduler, one step at a time.
  if (c.numContinuousDecodeSteps > 1 && c.tpSize > 1)
    throw new ConfigError(`--num-continuous-decode-steps ${c.numContinuousDecodeSteps} needs --tp-size 1 (got ${c.tpSize}): only rank 0 samples, so every step's tokens must go through the scheduler`)
  checkTraceKeep(c.traceKeep)
  // KV crosses instances whole (one rank holds every head) and arrives at the one worker that binds the bootstrap port.
  if (c.disaggregationMode !== 'null' && c.tpSize > 1) throw new ConfigError(`--disaggregation-mode ${c.disaggregationMode} needs --tp-size 1 (got ${c.tpSize})`)
  if (c.disaggregationMode === 'decode' && c.dpSize > 1) throw new ConfigError(`--disaggregation-mode decode needs --dp-size 1 (got ${c.dpSize}): one worker receives the KV`)
  if (c.nodeRank >= c.nnodes) throw new ConfigError(`--node-rank ${c.nodeRank} is not below --nnodes ${c.nnodes}`)
  if (c.nnodes > 1) {
    if (!c.ipc.startsWith('tcp://')) throw new ConfigError('--nnodes > 1 needs --ipc tcp://HOST:PORT (ipc sockets do not cross hosts)')
    if (c.nodeHosts.length !== c.nnodes) throw new ConfigError(`--node-hosts must name ${c.nnodes} hosts, one per node, got ${c.nodeHosts.length}`)
    if (c.dpSize * c.tpSize < c.nnodes) throw new ConfigError(`${c.dpSize * c.tpSize} workers cannot be spread over ${c.nnodes} nodes`)
  }
}

export function helpText(): string {
  const lines = ['Usage: npm start -- [options]', '', 'Flags win over environment variables, which win over defaults.', '']
  let group = ''
  for (const s of specs) {
    if (s.group !== group) {
      group = s.group
      lines.push(`${group}:`)
    }
    const names = [s.flag, ...(s.aliases ?? [])].join(', ')
    const value = s.type === 'bool' ? '' : s.type === 'enum' ? ` <${s.choices!.join('|')}>` : ` <${s.type}>`
    const def = JSON.stringify(s.default)
    lines.push(`  ${names}${value}`)
    lines.push(`      ${s.help} (default: ${def}${s.env?.length ? `; env: ${s.env.join(', ')}` : ''})`)
  }
  return lines.join('\n') + '\n'
}
