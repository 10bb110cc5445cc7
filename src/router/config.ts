/**
 * `spanserve router` flags. The router's own (instances, policy, health checks) are declared here;
 * the perimeter, key, logging and tracing flags are the server's, read through the one schema
 * (src/config/schema.ts) with the same defaults and environment variables, so that the router and
 * its instances are configured alike. Flags win over environment variables, which win over defaults.
 */
import { parseConfig } from '../config/parse.ts'
import { ConfigError } from '../config/config-error.ts'
import { OPTIONS, type Config, type OptionSpec } from '../config/schema.ts'
import { SERVICE_NAME } from '../tracing/attributes.ts'
import { parseDnsTarget } from './instances.ts'
import { POLICIES, type PolicyName } from './policy.ts'

interface RouterOption {
  key: keyof RouterOwnConfig
  flag: string
  env: string
  type: 'int' | 'float' | 'string' | 'list'
  default: number | string | string[]
  /** A string option's allowed values. */
  choices?: readonly string[]
  min?: number
  max?: number
  help: string
}

interface RouterOwnConfig {
  host: string
  port: number
  instances: string[]
  instancesDns: string
  prefill: string[]
  decode: string[]
  prefillDns: string
  decodeDns: string
  dnsInterval: number
  healthCheckInterval: number
  healthCheckTimeout: number
  policy: PolicyName
  cacheThreshold: number
  balanceAbsThreshold: number
  balanceRelThreshold: number
  maxTreeSize: number
}

/** The router's own flags. The four policy defaults are SGLang's router's (sgl-model-gateway, router_args.py). */
const ROUTER_OPTIONS: readonly RouterOption[] = [
  { key: 'host', flag: '--host', env: 'SPANSERVE_ROUTER_HOST', type: 'string', default: '127.0.0.1', help: 'Address the router binds; 0.0.0.0 listens on all interfaces.' },
  { key: 'port', flag: '--port', env: 'SPANSERVE_ROUTER_PORT', type: 'int', default: 8080, min: 0, max: 65535, help: 'HTTP port (0 picks a free one).' },
  {
    key: 'instances',
    flag: '--instance',
    env: 'SPANSERVE_ROUTER_INSTANCES',
    type: 'list',
    default: [],
    help: 'Base URL of a spanserve instance (http://HOST:PORT); repeat the flag for each (the variable takes a comma-separated list).',
  },
  {
    key: 'instancesDns',
    flag: '--instances-dns',
    env: 'SPANSERVE_ROUTER_INSTANCES_DNS',
    type: 'string',
    default: '',
    help: 'NAME:PORT of a Kubernetes headless Service: every A and AAAA record of NAME is an instance on PORT, read again every --dns-interval.',
  },
  {
    key: 'prefill',
    flag: '--prefill',
    env: 'SPANSERVE_ROUTER_PREFILL',
    type: 'list',
    default: [],
    help: 'Prefill/decode disaggregation: base URL of an instance started with --disaggregation-mode prefill; repeat the flag for each (the variable takes a comma-separated list). Needs --decode or --decode-dns; not with --instance or --instances-dns.',
  },
  {
    key: 'decode',
    flag: '--decode',
    env: 'SPANSERVE_ROUTER_DECODE',
    type: 'list',
    default: [],
    help: 'Prefill/decode disaggregation: base URL of an instance started with --disaggregation-mode decode; repeat the flag for each (the variable takes a comma-separated list). Needs --prefill or --prefill-dns.',
  },
  {
    key: 'prefillDns',
    flag: '--prefill-dns',
    env: 'SPANSERVE_ROUTER_PREFILL_DNS',
    type: 'string',
    default: '',
    help: 'NAME:PORT of a headless Service of prefill instances (as --instances-dns).',
  },
  {
    key: 'decodeDns',
    flag: '--decode-dns',
    env: 'SPANSERVE_ROUTER_DECODE_DNS',
    type: 'string',
    default: '',
    help: 'NAME:PORT of a headless Service of decode instances (as --instances-dns).',
  },
  {
    key: 'dnsInterval',
    flag: '--dns-interval',
    env: 'SPANSERVE_ROUTER_DNS_INTERVAL',
    type: 'float',
    default: 5,
    min: 0.1,
    help: 'Seconds between DNS lookups of --instances-dns, --prefill-dns and --decode-dns.',
  },
  {
    key: 'healthCheckInterval',
    flag: '--health-check-interval',
    env: 'SPANSERVE_ROUTER_HEALTH_CHECK_INTERVAL',
    type: 'float',
    default: 2,
    min: 0.1,
    help: 'Seconds between GET /health of every instance; one that fails gets no new requests until one passes.',
  },
  {
    key: 'healthCheckTimeout',
    flag: '--health-check-timeout',
    env: 'SPANSERVE_ROUTER_HEALTH_CHECK_TIMEOUT',
    type: 'float',
    default: 2,
    min: 0.1,
    help: 'Seconds a health check may take before it counts as failed.',
  },
  {
    key: 'policy',
    flag: '--policy',
    env: 'SPANSERVE_ROUTER_POLICY',
    type: 'string',
    default: 'cache_aware',
    choices: POLICIES,
    help: "cache_aware: SGLang's cache-aware routing (the thresholds below); round_robin: each request to the next healthy instance in turn, cache and load ignored (SGLang's names; round_robin is a baseline to measure against).",
  },
  {
    key: 'cacheThreshold',
    flag: '--cache-threshold',
    env: 'SPANSERVE_ROUTER_CACHE_THRESHOLD',
    type: 'float',
    default: 0.3,
    min: 0,
    max: 1,
    help: "The instance holding the longest prefix of the prompt wins when that prefix is more than this share of the prompt's characters (SGLang's default).",
  },
  {
    key: 'balanceAbsThreshold',
    flag: '--balance-abs-threshold',
    env: 'SPANSERVE_ROUTER_BALANCE_ABS_THRESHOLD',
    type: 'int',
    default: 64,
    min: 0,
    help: "Load decides instead of the cache when the busiest instance has more than this many requests in flight over the idlest, and --balance-rel-threshold times as many (SGLang's default).",
  },
  {
    key: 'balanceRelThreshold',
    flag: '--balance-rel-threshold',
    env: 'SPANSERVE_ROUTER_BALANCE_REL_THRESHOLD',
    type: 'float',
    default: 1.5,
    min: 1,
    help: "See --balance-abs-threshold: the ratio of the busiest instance's requests in flight to the idlest's (SGLang's default).",
  },
  {
    key: 'maxTreeSize',
    flag: '--max-tree-size',
    env: 'SPANSERVE_ROUTER_MAX_TREE_SIZE',
    type: 'int',
    default: 2 ** 26,
    min: 1,
    help: "Characters of prompt text remembered per instance; past it, the least recently used are forgotten first (SGLang's default, 2^26).",
  },
]

/** The server's options that mean the same on the router. */
const SHARED = new Set(['bodyLimit', 'apiKey', 'apiKeyFile', 'headersTimeout', 'bodyTimeout', 'maxHeaders', 'maxConnectionsPerClient', 'shutdownTimeout', 'logLevel'])
const sharedSpecs: readonly OptionSpec[] = (OPTIONS as readonly OptionSpec[]).filter((s) => SHARED.has(s.key) || s.group === 'tracing')

type DnsTarget = { name: string; port: number }

/** Where one role's instances come from: fixed URLs, DNS, or both. */
export interface InstanceSource {
  urls: string[]
  dns: DnsTarget | null
}

export type RouterConfig = RouterOwnConfig & {
  shared: Config
  /** --instances-dns, parsed. */
  dns: DnsTarget | null
  /** Prefill/decode disaggregation (--prefill, --decode, …), or null: whole instances (--instance, --instances-dns). */
  pd: { prefill: InstanceSource; decode: InstanceSource } | null
}

const own = new Map(ROUTER_OPTIONS.map((o) => [o.flag, o]))
const shared = new Map<string, OptionSpec>()
for (const s of sharedSpecs) for (const f of [s.flag, ...(s.aliases ?? [])]) shared.set(f, s)

function ownValue(o: RouterOption, raw: string, where: string): number | string | string[] {
  if (o.type === 'string') {
    if (o.choices !== undefined && !o.choices.includes(raw)) throw new ConfigError(`${where}: expected one of ${o.choices.join(', ')}, got "${raw}"`)
    return raw
  }
  if (o.type === 'list')
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
  const n = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(n) || (o.type === 'int' && !Number.isInteger(n))) throw new ConfigError(`${where}: expected ${o.type === 'int' ? 'an integer' : 'a number'}, got "${raw}"`)
  if (o.min !== undefined && n < o.min) throw new ConfigError(`${where}: must be at least ${o.min}, got ${n}`)
  if (o.max !== undefined && n > o.max) throw new ConfigError(`${where}: must be at most ${o.max}, got ${n}`)
  return n
}

/** Parses the router's command line (without the `router` word). `help` true: print routerHelp() and exit. */
export function parseRouterConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): { config: RouterConfig; help: boolean } {
  const values: Record<string, unknown> = {}
  const sharedArgv: string[] = []
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      help = true
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    const o = own.get(name)
    if (o !== undefined) {
      if (eq < 0 && i + 1 >= argv.length) throw new ConfigError(`${name} needs a value`)
      const value = ownValue(o, eq > 0 ? arg.slice(eq + 1) : argv[++i]!, name)
      values[o.key] = o.type === 'list' ? [...((values[o.key] as string[] | undefined) ?? []), ...(value as string[])] : value
      continue
    }
    const s = shared.get(name) ?? (name.startsWith('--no-') ? shared.get('--' + name.slice(5)) : undefined)
    if (s === undefined) throw new ConfigError(`unknown flag ${name} (see spanserve router --help)`)
    sharedArgv.push(arg)
    // The value goes with its flag (a boolean's only when it reads as one, as parseConfig takes it).
    const next = argv[i + 1]
    if (eq < 0 && next !== undefined && (s.type !== 'bool' ? true : /^(true|false|1|0|yes|no|on|off)$/i.test(next))) sharedArgv.push(argv[++i]!)
  }
  for (const o of ROUTER_OPTIONS) {
    if (o.key in values) continue
    const raw = env[o.env]
    values[o.key] = raw !== undefined && raw !== '' ? ownValue(o, raw, o.env) : structuredClone(o.default)
  }
  // Only the shared options' variables: the server's others (SPANSERVE_PORT, …) are not the router's.
  const sharedEnv: NodeJS.ProcessEnv = {}
  for (const s of sharedSpecs) for (const e of s.env ?? []) if (env[e] !== undefined) sharedEnv[e] = env[e]
  for (const e of ['OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG']) if (env[e] !== undefined) sharedEnv[e] = env[e]
  const { config: sharedConfig } = parseConfig(sharedArgv, sharedEnv)
  // Its spans say they are the router's, unless a service name was given.
  const named =
    sharedArgv.includes('--service-name') ||
    sharedArgv.some((a) => a.startsWith('--service-name=')) ||
    sharedEnv.OTEL_SERVICE_NAME ||
    sharedEnv.FD_SERVICE_NAME ||
    sharedConfig.resourceAttributes[SERVICE_NAME]
  if (!named) sharedConfig.serviceName = 'spanserve-router'
  const ownConfig = values as unknown as RouterOwnConfig
  const dnsFlag = (flag: string, value: string): DnsTarget | null => {
    if (value === '') return null
    const target = parseDnsTarget(value)
    if (target === null) throw new ConfigError(`${flag}: expected NAME:PORT, got "${value}"`)
    return target
  }
  const urlsFlag = (flag: string, urls: readonly string[]) => {
    for (const url of urls) if (!/^https?:\/\/[^/]+\/?$/.test(url)) throw new ConfigError(`${flag}: expected a base URL such as http://10.0.0.7:8000, got "${url}"`)
  }
  const dns = dnsFlag('--instances-dns', ownConfig.instancesDns)
  urlsFlag('--instance', ownConfig.instances)
  const prefill: InstanceSource = { urls: ownConfig.prefill, dns: dnsFlag('--prefill-dns', ownConfig.prefillDns) }
  const decode: InstanceSource = { urls: ownConfig.decode, dns: dnsFlag('--decode-dns', ownConfig.decodeDns) }
  urlsFlag('--prefill', prefill.urls)
  urlsFlag('--decode', decode.urls)
  const given = (s: InstanceSource) => s.urls.length > 0 || s.dns !== null
  const whole = ownConfig.instances.length > 0 || dns !== null
  let pd: RouterConfig['pd'] = null
  if (given(prefill) || given(decode)) {
    if (whole)
      throw new ConfigError(
        '--instance/--instances-dns cannot be mixed with --prefill/--decode (prefill/decode disaggregation): a router sends its requests either to whole instances or to prefill and decode pairs',
      )
    if (!given(prefill) || !given(decode))
      throw new ConfigError(
        `prefill/decode disaggregation needs both a prefill source (--prefill URL or --prefill-dns NAME:PORT) and a decode source (--decode URL or --decode-dns NAME:PORT); only ${given(prefill) ? 'prefill' : 'decode'} was given`,
      )
    pd = { prefill, decode }
  }
  if (!help && !whole && pd === null)
    throw new ConfigError(
      'no instances: give --instance URL (repeatable) or --instances-dns NAME:PORT, or, for prefill/decode disaggregation, --prefill and --decode (or --prefill-dns and --decode-dns)',
    )
  return { config: { ...ownConfig, shared: sharedConfig, dns, pd }, help }
}

export function routerHelp(): string {
  const lines = [
    'Usage: spanserve router --instance URL [--instance URL …] | --instances-dns NAME:PORT [options]',
    '       spanserve router --prefill URL [--prefill URL …] --decode URL [--decode URL …] [options]   (prefill/decode disaggregation; or --prefill-dns, --decode-dns)',
    '',
    'Flags win over environment variables, which win over defaults.',
    '',
    'router:',
  ]
  for (const o of ROUTER_OPTIONS) {
    lines.push(`  ${o.flag} <${o.choices?.join('|') ?? (o.type === 'list' ? 'url' : o.type)}>`)
    lines.push(`      ${o.help} (default: ${JSON.stringify(o.default)}; env: ${o.env})`)
  }
  lines.push('', "the server's (npm start -- --help has their full text):")
  for (const s of sharedSpecs) lines.push(`  ${s.flag}${s.type === 'bool' ? '' : ` <${s.type}>`}  (default: ${JSON.stringify(s.default)}${s.env?.length ? `; env: ${s.env.join(', ')}` : ''})`)
  return lines.join('\n') + '\n'
}
