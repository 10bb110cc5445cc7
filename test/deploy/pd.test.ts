/**
 * Prefill/decode disaggregation, deployed: deploy/kubernetes/overlays/pd, built with kubectl's
 * kustomize and validated against the Kubernetes API schemas, and the compose file's `pd` profile.
 * Every instance's arguments and environment are parsed by spanserve's own parser and the router's
 * by the router's; --prefill-dns and --decode-dns are followed to headless Services that select the
 * right pods on the port they listen on; the decode pods declare the bootstrap port their arguments
 * bind; prefill and decode read the IPC secret from one Secret. The pods are checked against the
 * base's instance and the router overlay's router, so that probes, drain and tracing stay theirs
 * (kubernetes.test.ts and router.test.ts ask those of the real apps). No cluster here: DNS is
 * checked by name, not resolved.
 */
import t from 'tap'
import { posix } from 'node:path'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parse } from 'yaml'
import { parseConfig } from '../../src/config/parse.ts'
import type { Config } from '../../src/config/schema.ts'
import { createLogger } from '../../src/logging.ts'
import { assembleRouter } from '../../src/router/assemble.ts'
import { parseRouterConfig, type RouterConfig } from '../../src/router/config.ts'
import { kustomizeBuild, loadAllYaml, loadYaml, validateK8s } from './manifests.ts'

type DnsTarget = { name: string; port: number }
const OVERLAY = 'kubernetes/overlays/pd'
const built = kustomizeBuild(OVERLAY)
if (built === null) t.comment('kubectl not found: checking the resource files as written, with the namespace and deletions applied by hand (no image tags, no replicas count)')

/**
 * A kustomization's objects: as kustomize builds them, or (without kubectl) its resource files and
 * directories read as written, with its namespace and its `$patch: delete` patches applied by hand.
 */
function objectsOf(dir: string): any[] {
  const b = kustomizeBuild(dir)
  if (b) return b
  const k = loadYaml(`${dir}/kustomization.yaml`)
  const objs: any[] = k.resources.flatMap((r: string) => (r.endsWith('.yaml') ? loadAllYaml(`${dir}/${r}`) : objectsOf(posix.join(dir, r))))
  const drops = (k.patches ?? []).filter((p: any) => typeof p.patch === 'string' && p.patch.includes('$patch: delete')).map((p: any) => parse(p.patch))
  const kept = objs.filter((o) => !drops.some((d: any) => d.kind === o.kind && d.metadata.name === o.metadata?.name))
  if (k.namespace) for (const o of kept) if (o.kind !== 'Namespace') o.metadata.namespace = k.namespace
  return kept
}

const pd = (): any[] => structuredClone(built ?? objectsOf(OVERLAY))
const find = (objs: any[], kind: string, name: string): any => {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name)
  if (!o) throw new Error(`no ${kind} ${name}`)
  return o
}
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels?.[k] === v)
/** A port given by name or number, as the container's port number. */
const containerPort = (c: any, port: string | number): number | undefined => (typeof port === 'number' ? port : c.ports?.find((p: any) => p.name === port)?.containerPort)
/** Literal variables; a Secret-backed one reads as SECRET(name/key), as if the kubelet had filled it in. */
const envOf = (c: any): Record<string, string> =>
  Object.fromEntries(
    (c.env ?? [])
      .filter((e: any) => 'value' in e || e.valueFrom?.secretKeyRef)
      .map((e: any) => [e.name, 'value' in e ? e.value : `SECRET(${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key})`]),
  )
const secretRefs = (c: any): Record<string, any> => Object.fromEntries((c.env ?? []).filter((e: any) => e.valueFrom?.secretKeyRef).map((e: any) => [e.name, e.valueFrom.secretKeyRef]))

const deploymentOf = (objs: any[], name: string) => {
  const d = find(objs, 'Deployment', name)
  return { d, c: d.spec.template.spec.containers[0], labels: d.spec.template.metadata.labels as Record<string, string> }
}
const instanceOf = (objs: any[], name: string) => {
  const x = deploymentOf(objs, name)
  return { ...x, config: parseConfig(x.c.args, envOf(x.c)).config }
}
const routerOf = (objs: any[]) => {
  const x = deploymentOf(objs, 'spanserve-router')
  return { ...x, config: parseRouterConfig(x.c.args, envOf(x.c)).config }
}

/** Drops flag/value pairs (or --flag=value) whose flag passes `drop`. */
function withoutFlags(args: readonly string[], drop: (flag: string) => boolean): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a.startsWith('--') && drop(a.split('=')[0]!)) {
      if (!a.includes('=')) i++
      continue
    }
    out.push(a)
  }
  return out
}

/**
 * Where a DNS target leads, as problems (empty: it names, in the router's namespace, a headless
 * Service that selects the pods of `deployment` and no other Deployment's, on the port those pods
 * listen on). A headless name resolves to the pods' own addresses, so the port is the container's.
 */
function dnsProblems(objs: any[], target: DnsTarget | null, deployment: string): string[] {
  if (target === null) return [`no DNS name for ${deployment}`]
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(target.name)
  if (m === null) return [`${target.name} is not SERVICE.NAMESPACE.svc.cluster.local`]
  const [, name, ns] = m
  const problems: string[] = []
  if (!objs.some((o) => o.kind === 'Namespace' && o.metadata.name === ns)) problems.push(`no Namespace ${ns}`)
  const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === name && o.metadata.namespace === ns)
  if (!svc) return [...problems, `no Service ${name} in ${ns}`]
  if (svc.spec.clusterIP !== 'None') problems.push(`Service ${name} is not headless (clusterIP ${svc.spec.clusterIP}): its name would resolve to one virtual IP`)
  const pods = instanceOf(objs, deployment)
  if (!selects(svc.spec.selector, pods.labels)) problems.push(`Service ${name} does not select the ${deployment} pods`)
  for (const d of objs.filter((o) => o.kind === 'Deployment' && o.metadata.name !== deployment)) {
    if (selects(svc.spec.selector, d.spec.template.metadata.labels)) problems.push(`Service ${name} also selects ${d.metadata.name}'s pods`)
  }
  if (target.port !== pods.config.port) problems.push(`DNS port ${target.port} is not the port ${deployment} listens on (${pods.config.port})`)
  if (!svc.spec.ports.some((p: any) => containerPort(pods.c, p.targetPort ?? p.port) === target.port)) problems.push(`Service ${name} has no port onto ${target.port}`)
  if (svc.metadata.namespace !== find(objs, 'Deployment', 'spanserve-router').metadata.namespace) problems.push('the router and the Service are in different namespaces')
  return problems
}

/**
 * Whether every prefill pod can open the decode pods' bootstrap port, as problems: the decode
 * container declares the port its arguments bind, and no NetworkPolicy that isolates the decode
 * pods for ingress leaves it closed to the prefill pods.
 */
function bootstrapProblems(objs: any[]): string[] {
  const decode = instanceOf(objs, 'spanserve-decode')
  const prefill = instanceOf(objs, 'spanserve-prefill')
  const port = decode.config.disaggregationBootstrapPort
  const problems: string[] = []
  const declared = decode.c.ports?.find((p: any) => p.containerPort === port)
  if (!declared) problems.push(`the decode container does not declare its bootstrap port ${port}`)
  else if ((declared.protocol ?? 'TCP') !== 'TCP') problems.push(`the bootstrap port is ${declared.protocol}, not TCP`)
  const ns = decode.d.metadata.namespace
  const isolating = objs.filter(
    (o) => o.kind === 'NetworkPolicy' && o.metadata.namespace === ns && selects(o.spec.podSelector?.matchLabels ?? {}, decode.labels) && (o.spec.policyTypes ?? ['Ingress']).includes('Ingress'),
  )
  const portOpen = (p: any) => p.port === undefined || p.port === port || (typeof p.port === 'string' && containerPort(decode.c, p.port) === port)
  const fromPrefill = (f: any) => f.ipBlock === undefined && f.namespaceSelector === undefined && selects(f.podSelector?.matchLabels ?? {}, prefill.labels)
  const open = (rule: any) => (rule.ports ?? [{}]).some(portOpen) && (rule.from === undefined || rule.from.some(fromPrefill))
  if (isolating.length > 0 && !isolating.some((np) => (np.spec.ingress ?? []).some(open)))
    problems.push(`NetworkPolicy ${isolating.map((np) => np.metadata.name).join(', ')} closes the bootstrap port ${port} to the prefill pods`)
  return problems
}

/** The router's prefill and decode sources (--prefill/--prefill-dns, --decode/--decode-dns), as the router parsed them. */
function pdTargets(config: RouterConfig): { prefillDns: DnsTarget | null; decodeDns: DnsTarget | null; prefill: string[]; decode: string[] } {
  if (config.pd === null) throw new Error('the router is not in prefill/decode mode (no --prefill/--decode sources)')
  return { prefillDns: config.pd.prefill.dns, decodeDns: config.pd.decode.dns, prefill: config.pd.prefill.urls, decode: config.pd.decode.urls }
}
t.test('the overlay renders, and every object validates against the Kubernetes API schema', async (t) => {
  const objs = pd()
  for (const o of objs) await t.resolves(validateK8s(o), `${o.kind} ${o.metadata?.name}`)
  for (const [kind, name] of [
    ['Deployment', 'spanserve-prefill'],
    ['Deployment', 'spanserve-decode'],
    ['Deployment', 'spanserve-router'],
    ['Service', 'spanserve-prefill'],
    ['Service', 'spanserve-decode'],
    ['Service', 'spanserve-router'],
    ['Deployment', 'otel-collector'],
    ['Deployment', 'jaeger'],
    ['PersistentVolumeClaim', 'spanserve-models'],
  ]) {
    t.equal(find(objs, kind!, name!).metadata.namespace, 'spanserve', `${kind} ${name} in the spanserve namespace`)
  }
  // The base's co-located instances and their Service are not in this shape: that Service would
  // select the prefill and decode pods too.
  t.notOk(
    objs.some((o) => o.metadata?.name === 'spanserve' && (o.kind === 'Deployment' || o.kind === 'Service')),
    "the base's spanserve Deployment and Service are dropped",
  )
  for (const svc of objs.filter((o) => o.kind === 'Service')) {
    const reaches = objs.filter((o) => o.kind === 'Deployment' && selects(svc.spec.selector, o.spec.template.metadata.labels)).map((o) => o.metadata.name)
    t.ok(reaches.length === 1, `Service ${svc.metadata.name} selects one Deployment's pods (${reaches.join(', ')})`)
  }
  t.notOk(
    objs.some((o) => o.kind === 'Secret'),
    'no Secret is shipped: the IPC secret is created in the cluster, not kept in the repository',
  )
  if (!built) return
  const images = ['spanserve-prefill', 'spanserve-decode', 'spanserve-router'].map((n) => deploymentOf(objs, n).c.image)
  t.equal(new Set(images).size, 1, `every spanserve pod runs one image (${images[0]})`)
  t.match(images[0], /^spanserve:\d/, 'a tagged image')
  for (const n of ['spanserve-prefill', 'spanserve-decode']) t.ok(find(objs, 'Deployment', n).spec.replicas >= 1, `${n}: replicas set`)
  for (const n of ['spanserve-prefill', 'spanserve-decode', 'spanserve-router']) t.equal(find(objs, 'Deployment', n).metadata.labels['app.kubernetes.io/part-of'], 'spanserve')
})

t.test("prefill and decode pods are the base's instance pod, with their mode, the bootstrap port and the IPC secret", async (t) => {
  const objs = pd()
  const base = find(objectsOf('kubernetes/base'), 'Deployment', 'spanserve').spec.template
  const isPd = (flag: string) => flag.startsWith('--disaggregation-')
  for (const name of ['spanserve-prefill', 'spanserve-decode']) {
    const template = structuredClone(find(objs, 'Deployment', name).spec.template)
    const c = template.spec.containers[0]
    c.args = withoutFlags(c.args, isPd)
    c.env = c.env.filter((e: any) => e.name !== 'SPANSERVE_IPC_SECRET')
    c.ports = c.ports.filter((p: any) => p.name !== 'bootstrap')
    t.same(template.spec, base.spec, `${name}: the base's pod spec, save the disaggregation flags, the bootstrap port and the secret`)
    t.same(template.metadata.annotations, base.metadata.annotations, `${name}: the base's scrape annotations`)
    t.match(template.metadata.labels, base.metadata.labels, `${name}: the base's pod labels`)
    t.same(
      Object.keys(template.metadata.labels).filter((k) => !(k in base.metadata.labels)),
      ['app.kubernetes.io/component'],
      `${name}: the base's labels and a component`,
    )
  }
})

t.test('the instances parse as prefill and decode, with what each mode needs', async (t) => {
  const objs = pd()
  const prefill = instanceOf(objs, 'spanserve-prefill')
  const decode = instanceOf(objs, 'spanserve-decode')
  t.equal(prefill.config.disaggregationMode, 'prefill')
  t.equal(decode.config.disaggregationMode, 'decode')
  t.equal(prefill.labels['app.kubernetes.io/component'], 'prefill')
  t.equal(decode.labels['app.kubernetes.io/component'], 'decode')
  for (const [name, x] of [
    ['prefill', prefill],
    ['decode', decode],
  ] as const) {
    t.equal(x.config.tpSize, 1, `${name}: --tp-size 1`)
    t.equal(x.config.host, '0.0.0.0', `${name}: listens on the pod's address (the KV socket binds --host too)`)
    t.equal(containerPort(x.c, 'http'), x.config.port, `${name}: the container port is the server's`)
    t.equal(x.config.traceEnable, true, `${name}: traced`)
    t.equal(x.config.otlpTracesEndpoint, 'otel-collector:4317')
  }
  t.equal(decode.config.dpSize, 1, 'decode: --dp-size 1 (one worker receives the KV)')
  // The parser refuses what disaggregation cannot do, so the flags above are what it accepts.
  t.throws(() => parseConfig([...decode.c.args, '--dp-size', '2'], envOf(decode.c)), /needs --dp-size 1/)
  t.throws(() => parseConfig([...prefill.c.args, '--tp-size', '2'], envOf(prefill.c)), /needs --tp-size 1/)

  // The bootstrap port: bound by the decode pods, declared, and open to the prefill pods.
  t.equal(containerPort(decode.c, 'bootstrap'), decode.config.disaggregationBootstrapPort, `the decode pods declare the bootstrap port they bind (${decode.config.disaggregationBootstrapPort})`)
  t.not(decode.config.disaggregationBootstrapPort, 0, 'a fixed port, not one picked at start')
  t.not(decode.config.disaggregationBootstrapPort, decode.config.port, 'apart from the HTTP port')
  t.same(bootstrapProblems(objs), [], 'the prefill pods reach it')
  const svc = find(objs, 'Service', 'spanserve-decode')
  t.ok(
    svc.spec.ports.some((p: any) => containerPort(decode.c, p.targetPort) === decode.config.disaggregationBootstrapPort),
    'the headless Service lists it',
  )
  // The check catches each way it could be wrong.
  const broken = (edit: (objs: any[]) => void): string[] => {
    const o = structuredClone(objs)
    edit(o)
    return bootstrapProblems(o)
  }
  const decodePods = { 'app.kubernetes.io/component': 'decode' }
  t.match(
    broken((o) => (deploymentOf(o, 'spanserve-decode').c.ports = deploymentOf(o, 'spanserve-decode').c.ports.filter((p: any) => p.name !== 'bootstrap'))),
    [/does not declare its bootstrap port 8998/],
  )
  const denyAll = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'deny', namespace: 'spanserve' },
    spec: { podSelector: { matchLabels: decodePods }, policyTypes: ['Ingress'] },
  }
  t.match(
    broken((o) => o.push(structuredClone(denyAll))),
    [/NetworkPolicy deny closes the bootstrap port 8998/],
  )
  const httpOnly = { ...structuredClone(denyAll), spec: { ...denyAll.spec, ingress: [{ ports: [{ port: 'http' }] }] } }
  t.match(
    broken((o) => o.push(httpOnly)),
    [/closes the bootstrap port/],
  )
  const fromPrefill = {
    ...structuredClone(denyAll),
    spec: { ...denyAll.spec, ingress: [{ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/component': 'prefill' } } }], ports: [{ port: 'bootstrap' }] }] },
  }
  await t.resolves(validateK8s(fromPrefill), 'an allowing policy is a valid NetworkPolicy')
  t.same(
    broken((o) => o.push(structuredClone(denyAll), fromPrefill)),
    [],
    'a policy that lets the prefill pods in opens it',
  )
})

t.test('prefill and decode share the IPC secret, from a Secret that must exist', async (t) => {
  const objs = pd()
  const prefill = instanceOf(objs, 'spanserve-prefill')
  const decode = instanceOf(objs, 'spanserve-decode')
  const refs = secretRefs(prefill.c)
  t.ok(refs.SPANSERVE_IPC_SECRET, 'prefill reads SPANSERVE_IPC_SECRET from a Secret')
  t.same(secretRefs(decode.c), refs, 'decode reads the same variables from the same Secret and key')
  t.not(refs.SPANSERVE_IPC_SECRET?.optional, true, 'not optional: without the Secret the pods wait, rather than send KV unencrypted or fail to pair')
  t.ok(prefill.config.ipcSecret !== '' && prefill.config.ipcSecret === decode.config.ipcSecret, 'both parse the same secret: CURVE on the KV socket, with matching keys')
  for (const x of [prefill, decode])
    t.notOk(
      x.c.args.some((a: string) => a.startsWith('--ipc-secret')),
      `${x.d.metadata.name}: the secret is not on the command line`,
    )
  // The router carries no KV and needs no secret.
  t.same(secretRefs(routerOf(objs).c), {}, 'the router reads no Secret (the base sets no API key)')
})

t.test("the router: the router overlay's pod, pointed at the prefill and decode headless Services", async (t) => {
  const objs = pd()
  const { c, config } = routerOf(objs)
  const targets = pdTargets(config)
  t.equal(config.instances.length, 0, 'no whole instances')
  t.equal(config.dns, null, 'no --instances-dns')
  // The parser refuses a flag it does not know and a router that mixes whole instances with pairs.
  t.throws(() => parseRouterConfig([...c.args, '--prefill-dnss', 'x:1'], {}), /unknown flag --prefill-dnss/, 'an invented flag is refused')
  t.throws(() => parseRouterConfig([...c.args, '--instances-dns', 'spanserve-instances.spanserve.svc.cluster.local:8000'], {}), /cannot be mixed/)
  t.same(dnsProblems(objs, targets.prefillDns, 'spanserve-prefill'), [], `--prefill-dns ${targets.prefillDns?.name}:${targets.prefillDns?.port}`)
  t.same(dnsProblems(objs, targets.decodeDns, 'spanserve-decode'), [], `--decode-dns ${targets.decodeDns?.name}:${targets.decodeDns?.port}`)
  t.equal(config.host, '0.0.0.0')
  t.equal(containerPort(c, 'http'), config.port, "the container port is the router's")

  // Everything else is the router overlay's router: probes, drain, tracing, security.
  const other = find(objectsOf('kubernetes/overlays/router'), 'Deployment', 'spanserve-router').spec.template
  const template = structuredClone(find(objs, 'Deployment', 'spanserve-router').spec.template)
  const pdFlag = (f: string) => ['--prefill-dns', '--decode-dns', '--prefill', '--decode'].includes(f)
  template.spec.containers[0].args = withoutFlags(template.spec.containers[0].args, pdFlag)
  other.spec.containers[0].args = withoutFlags(other.spec.containers[0].args, (f) => f === '--instances-dns')
  t.same(template, other, "the router overlay's router pod, save --instances-dns for --prefill-dns and --decode-dns")

  // The check catches each way it could be wrong.
  const broken = (edit: (objs: any[]) => void, target = targets.decodeDns, deployment = 'spanserve-decode'): string[] => {
    const o = structuredClone(objs)
    edit(o)
    return dnsProblems(o, target, deployment)
  }
  t.match(
    broken((o) => delete find(o, 'Service', 'spanserve-decode').spec.clusterIP),
    [/not headless/],
  )
  t.match(
    broken(() => {}, targets.prefillDns),
    [/does not select the spanserve-decode pods/],
  )
  t.match(
    broken((o) => delete find(o, 'Service', 'spanserve-decode').spec.selector['app.kubernetes.io/component']),
    [/also selects spanserve-prefill/],
  )
  t.match(
    broken(() => {}, targets.decodeDns && { ...targets.decodeDns, port: 8998 }),
    [/DNS port 8998 is not the port spanserve-decode listens on/],
  )
  t.match(
    broken(() => {}, targets.decodeDns && { ...targets.decodeDns, name: 'spanserve-decode.default.svc.cluster.local' }),
    [/no Namespace default/, /no Service spanserve-decode in default/],
  )
})

t.test("the router's probes under disaggregation, asked of the router's own app", async (t) => {
  const objs = pd()
  const { c, config } = routerOf(objs)
  const decodePod = instanceOf(objs, 'spanserve-decode')
  const log = createLogger('silent', {})
  // Scripted instances whose GET /health reports what spanserve's does under each mode (the contract
  // InstanceSet checks): the prefill pod its mode, the decode pod its mode and the bootstrap port it binds.
  const scripted = async (disaggregation: object) => {
    const server = createServer((req, res) => void res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', disaggregation })))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    t.teardown(() => new Promise<void>((r) => server.close(() => r())))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const prefillUrl = await scripted({ mode: 'prefill' })
  const decodeUrl = await scripted({ mode: 'decode', bootstrap_port: decodePod.config.disaggregationBootstrapPort })
  // The router's app as main.ts builds it under disaggregation: the decode set answers, the prefill set prefills.
  const appFor = async (prefillUrls: string[], decodeUrls: string[]) => {
    const pd = { prefill: { urls: prefillUrls, dns: null }, decode: { urls: decodeUrls, dns: null } }
    const r = await assembleRouter({ ...config, pd, healthCheckInterval: 60, healthCheckTimeout: 1 }, log, { resolve: async () => [] })
    await r.start()
    t.teardown(async () => {
      r.stop()
      await r.app.close()
    })
    return r
  }
  const up = await appFor([prefillUrl], [decodeUrl])
  const noDecode = await appFor([prefillUrl], ['http://127.0.0.1:1'])
  const swapped = await appFor([decodeUrl], [prefillUrl])

  const ready = c.readinessProbe.httpGet
  t.equal(containerPort(c, ready.port), config.port, 'readiness asks the port the router listens on')
  t.equal((await up.app.inject({ method: 'GET', url: ready.path })).statusCode, 200, `${ready.path}: 200 with a healthy prefill and a healthy decode instance`)
  t.equal((await noDecode.app.inject({ method: 'GET', url: ready.path })).statusCode, 503, `${ready.path}: 503 with no decode instance, so the router leaves its Service`)
  t.equal((await swapped.app.inject({ method: 'GET', url: ready.path })).statusCode, 503, `${ready.path}: 503 when the pods run the other mode (a Service pointed at the wrong Deployment)`)
  t.equal(up.instances.list()[0]!.bootstrapPort, containerPort(decodePod.c, 'bootstrap'), "the router sends prefill pods the decode pod's declared bootstrap port")
  t.equal(containerPort(c, c.livenessProbe.tcpSocket?.port), config.port, 'liveness: the port accepts (not /health, which is red whenever a side is)')
  const annotations = find(objs, 'Deployment', 'spanserve-router').spec.template.metadata.annotations
  t.equal((await up.app.inject({ method: 'GET', url: annotations['prometheus.io/path'] })).statusCode, 200, 'the scrape path is served')
})

// ---------------------------------------------------------------------------------------------
// Docker Compose: the `pd` profile.

const compose = loadYaml('docker-compose.yaml')
/** A service's environment with ${VAR:-default} filled in from `vars`, as compose interpolates it. */
const composeEnv = (s: any, vars: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries<string>(s.environment ?? {}).map(([k, v]) => [k, String(v).replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_m, name, def) => vars[name] ?? def ?? '')]))

t.test('compose: the pd profile is a router, a prefill and a decode instance', async (t) => {
  const inPd = Object.entries<any>(compose.services)
    .filter(([, s]) => s.profiles?.includes('pd'))
    .map(([n]) => n)
    .sort()
  t.same(inPd, ['router-pd', 'spanserve-decode', 'spanserve-prefill'])
  for (const n of inPd) t.same(compose.services[n].profiles, ['pd'], `${n}: only in pd (a plain up -d starts what it started before)`)
  const { 'router-pd': router, 'spanserve-prefill': p, 'spanserve-decode': d, spanserve } = compose.services
  for (const s of [router, p, d]) t.same(s.build, spanserve.build, "the instances' image")
  t.same(router.entrypoint, ['node', 'bin/spanserve.js', 'router'], '`spanserve router`, node as PID 1')

  const vars = { SPANSERVE_IPC_SECRET: 'from-the-shell' }
  const prefill: Config = parseConfig(p.command, composeEnv(p, vars)).config
  const decode: Config = parseConfig(d.command, composeEnv(d, vars)).config
  t.equal(prefill.disaggregationMode, 'prefill')
  t.equal(decode.disaggregationMode, 'decode')
  t.equal(decode.dpSize, 1)
  t.ok(prefill.tpSize === 1 && decode.tpSize === 1)
  t.equal(prefill.ipcSecret, 'from-the-shell', 'prefill: the secret from the shell')
  t.equal(decode.ipcSecret, prefill.ipcSecret, 'decode: the same one')
  t.equal(parseConfig(d.command, composeEnv(d, {})).config.ipcSecret, '', 'unset, neither has one (and they still pair)')
  t.ok((d.expose ?? []).map(String).includes(String(decode.disaggregationBootstrapPort)), `the decode service exposes its bootstrap port ${decode.disaggregationBootstrapPort} on the compose network`)
  t.notOk(
    (d.ports ?? []).some((x: string) => x.endsWith(`:${decode.disaggregationBootstrapPort}`)),
    'and does not publish it on the host',
  )

  // The router: its own parser; every URL a service of this file, in the right mode, on its port.
  const { config } = parseRouterConfig(router.command, {})
  const targets = pdTargets(config)
  t.equal(config.instances.length, 0, 'no whole instances')
  t.equal(config.host, '0.0.0.0')
  t.equal(config.shared.otlpTracesEndpoint, prefill.otlpTracesEndpoint, 'spans go to the collector the instances use')
  t.ok(targets.prefill.length > 0 && targets.decode.length > 0, '--prefill and --decode given')
  for (const [role, urls] of [
    ['prefill', targets.prefill],
    ['decode', targets.decode],
  ] as const) {
    for (const url of urls) {
      const { hostname, port } = new URL(url)
      const s = compose.services[hostname]
      t.ok(s, `${url}: a service ${hostname}`)
      const instance = parseConfig(s.command, composeEnv(s, vars)).config
      t.equal(instance.disaggregationMode, role, `${url}: runs --disaggregation-mode ${role}`)
      t.equal(Number(port), instance.port, `${url}: the port ${hostname} listens on`)
      t.ok(router.depends_on.includes(hostname), `the router starts after ${hostname}`)
    }
  }
  // Host ports: none taken twice, whichever profiles run together.
  const published = Object.entries<any>(compose.services).flatMap(([n, s]) => (s.ports ?? []).map((x: string) => [n, String(x).split(':')[0]]))
  const seen = new Map<string, string>()
  for (const [n, hostPort] of published) {
    t.notOk(seen.has(hostPort), `${n}: host port ${hostPort} is not also ${seen.get(hostPort) ?? 'taken'}`)
    seen.set(hostPort, n)
  }
  t.ok(
    router.ports.some((x: string) => x.endsWith(`:${config.port}`)),
    `the router's port ${config.port} is published`,
  )
  const probe = router.healthcheck.test.join(' ')
  t.match(probe, `http://127.0.0.1:${config.port}/health`, "the router's health check asks its /health")
})
