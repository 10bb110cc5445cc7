/**
 * The instances behind the router: given by URL (--instance) or found in DNS (--instances-dns, a
 * Kubernetes headless Service: every A and AAAA record is a pod), each with its health, its requests
 * in flight through this router and its radix tree. Health is GET /health every interval (200: up);
 * a request that cannot reach an instance marks it down at once, and the next check that succeeds
 * brings it back. DNS is read again every interval: a new address is a new instance, a gone one is
 * dropped (its requests in flight finish); a lookup that fails keeps the instances it had.
 *
 * Each set has a role: `null` (whole instances, --instance), or `prefill` / `decode` (prefill/decode
 * disaggregation, --prefill / --decode). An instance is up only when its /health also reports the
 * disaggregation mode of its role (`"disaggregation": {"mode": …}`; none reported reads as "null"),
 * so that a prefill instance given as --decode, or as a whole instance, gets no requests (logged
 * once). A decode instance's reported `bootstrap_port` is recorded: prefill instances push the KV
 * there.
 */
import { promises as dns } from 'node:dns'
import type { Logger } from '../logging.ts'
import type { Candidate } from './policy.ts'
import { RadixTree } from './radix-tree.ts'

/** What an instance does under prefill/decode disaggregation; null: it prefills and decodes (no disaggregation). */
export type InstanceRole = 'prefill' | 'decode' | null

export interface Instance extends Candidate {
  /** Base URL, without a trailing slash: http://10.0.0.7:8000 */
  readonly url: string
  readonly role: InstanceRole
  healthy: boolean
  /** A decode instance's bootstrap port, as its last /health reported it. */
  bootstrapPort: number | null
  /** Why its last health check failed (logged when it changes), or null. */
  unhealthyReason: string | null
}

export interface InstanceSetOptions {
  /** Fixed instances (--instance). */
  urls: readonly string[]
  /** --instances-dns NAME:PORT, or null. */
  dns: { name: string; port: number } | null
  /** Every address `name` has now; throws when it cannot be known (the instances stay as they were). */
  resolve: (name: string) => Promise<string[]>
  healthIntervalMs: number
  healthTimeoutMs: number
  dnsIntervalMs: number
  /** --max-tree-size, characters per instance. */
  maxTreeChars: number
  log: Logger
  /** Default null: whole instances. */
  role?: InstanceRole
}

/** A and AAAA records of `name`; a name with neither is no addresses, other failures throw. */
export async function resolveAddresses(name: string): Promise<string[]> {
  const none = (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENODATA' || err.code === 'ENOTFOUND') return [] as string[]
    throw err
  }
  const [v4, v6] = await Promise.all([dns.resolve4(name).catch(none), dns.resolve6(name).catch(none)])
  return [...v4, ...v6]
}

/** "host:port" with an IPv6 address in brackets, as a URL wants it. */
function addressUrl(address: string, port: number): string {
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`
}

/** Parses --instances-dns NAME:PORT. */
export function parseDnsTarget(value: string): { name: string; port: number } | null {
  const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(value)
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) return null
  return { name: m[1]!, port: Number(m[2]) }
}

export class InstanceSet {
  private readonly byUrl = new Map<string, Instance>()
  private readonly timers: NodeJS.Timeout[] = []
  private picks = 0

  readonly role: InstanceRole

  constructor(private readonly opts: InstanceSetOptions) {
    this.role = opts.role ?? null
    for (const url of opts.urls) this.add(url)
  }

  /** Reads DNS and checks every instance once, then keeps doing so on their intervals. */
  async start(): Promise<void> {
    await this.refreshDns()
    await this.checkAll()
    this.timers.push(setInterval(() => void this.checkAll(), this.opts.healthIntervalMs).unref())
    if (this.opts.dns !== null) this.timers.push(setInterval(() => void this.refreshDns().then(() => this.checkAll()), this.opts.dnsIntervalMs).unref())
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t)
  }

  list(): Instance[] {
    return [...this.byUrl.values()]
  }

  healthy(): Instance[] {
    return this.list().filter((i) => i.healthy)
  }

  /** Records that the policy chose `instance` (for its ties). */
  picked(instance: Instance): void {
    instance.lastPicked = ++this.picks
  }

  /** A request could not reach it: no new requests until a health check passes. */
  markDown(instance: Instance, reason: string): void {
    if (!instance.healthy) return
    instance.healthy = false
    instance.unhealthyReason = reason
    this.opts.log.warn({ instance: instance.url, instance_role: instance.role ?? undefined, reason }, 'instance down')
  }

  private add(url: string): void {
    const base = url.replace(/\/+$/, '')
    if (this.byUrl.has(base)) return
    // Unhealthy until its first check passes.
    this.byUrl.set(base, { url: base, role: this.role, healthy: false, bootstrapPort: null, unhealthyReason: null, load: 0, tree: new RadixTree(this.opts.maxTreeChars), lastPicked: 0 })
  }

  private async refreshDns(): Promise<void> {
    const target = this.opts.dns
    if (target === null) return
    let addresses: string[]
    try {
      addresses = await this.opts.resolve(target.name)
    } catch (err) {
      this.opts.log.warn({ name: target.name, err: (err as Error).message }, 'instances: DNS lookup failed; keeping the instances known')
      return
    }
    const wanted = new Set([...this.opts.urls.map((u) => u.replace(/\/+$/, '')), ...addresses.map((a) => addressUrl(a, target.port))])
    for (const url of wanted) {
      if (!this.byUrl.has(url)) {
        this.add(url)
        this.opts.log.info({ instance: url }, 'instance found in DNS')
      }
    }
    for (const url of this.byUrl.keys()) {
      if (!wanted.has(url)) {
        this.byUrl.delete(url)
        this.opts.log.info({ instance: url }, 'instance gone from DNS')
      }
    }
  }

  private async checkAll(): Promise<void> {
    await Promise.all(this.list().map((i) => this.check(i)))
  }

  private async check(instance: Instance): Promise<void> {
    let reason: string | null
    try {
      const res = await fetch(instance.url + '/health', { signal: AbortSignal.timeout(this.opts.healthTimeoutMs) })
      const text = await res.text()
      reason = res.status === 200 ? this.roleMismatch(instance, text) : `GET /health answered ${res.status}`
    } catch (err) {
      reason = `GET /health failed: ${(err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`
    }
    const up = reason === null
    const changed = up !== instance.healthy || reason !== instance.unhealthyReason
    instance.healthy = up
    instance.unhealthyReason = reason
    if (!changed) return
    const role = instance.role ?? undefined
    if (up) this.opts.log.info({ instance: instance.url, instance_role: role, bootstrap_port: instance.bootstrapPort ?? undefined }, 'instance healthy')
    else this.opts.log.warn({ instance: instance.url, instance_role: role, reason }, 'instance unhealthy')
  }

  /** Null when the instance's /health body reports the disaggregation mode of its role (and, on decode, a bootstrap port); else why not. */
  private roleMismatch(instance: Instance, body: string): string | null {
    let mode = 'null'
    let port: unknown = null
    try {
      const d = (JSON.parse(body) as { disaggregation?: { mode?: unknown; bootstrap_port?: unknown } } | null)?.disaggregation
      if (d !== undefined && d !== null && typeof d === 'object') {
        mode = String(d.mode)
        port = d.bootstrap_port
      }
    } catch {
      /* a body that is not JSON reports no disaggregation */
    }
    const wanted = instance.role ?? 'null'
    if (mode !== wanted) {
      const given = instance.role === null ? '--instance' : `--${instance.role}`
      return `its /health reports disaggregation mode "${mode}", but it was given as ${given} (mode "${wanted}")`
    }
    if (instance.role !== 'decode') return null
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return `its /health reports no disaggregation.bootstrap_port (got ${JSON.stringify(port)})`
    instance.bootstrapPort = port
    return null
  }
}
